"""multipart/form-data bodies (RFC 7578): the pairs of a body, and a body from pairs.

As mitmproxy's ``mitmproxy.net.http.multipart``: keys and values are bytes (a field's
``name`` parameter and its raw content); a file part keeps only its content.
"""

from __future__ import annotations

import re
import secrets

_BOUNDARY = re.compile(r'boundary\s*=\s*"?([^";]+)"?', re.IGNORECASE)
_NAME = re.compile(rb'\bname\s*=\s*"([^"]*)"', re.IGNORECASE)


def boundary_of(content_type: str) -> str | None:
    """The boundary parameter of a multipart/form-data Content-Type, else None."""
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    match = _BOUNDARY.search(content_type)
    return match.group(1) if match else None


def decode(content_type: str, content: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """The (name, value) pairs of a multipart/form-data body; () if it is not one."""
    boundary = boundary_of(content_type)
    if not boundary or not content:
        return ()
    pairs = []
    for part in content.split(b"--" + boundary.encode("latin-1"))[1:]:
        if part.startswith(b"--"):
            break
        head, sep, body = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        match = _NAME.search(head)
        if match:
            pairs.append((match.group(1), body[:-2] if body.endswith(b"\r\n") else body))
    return tuple(pairs)


def encode(pairs, boundary: str | None = None) -> tuple[str, bytes]:
    """(Content-Type, body) for `pairs` of str or bytes, with `boundary` or a new one."""
    boundary = boundary or secrets.token_hex(16)
    out = []
    for key, value in pairs:
        key = key.encode() if isinstance(key, str) else key
        value = value.encode() if isinstance(value, str) else value
        out += [b"--", boundary.encode("latin-1"), b"\r\n",
                b'Content-Disposition: form-data; name="', key, b'"\r\n\r\n', value, b"\r\n"]
    out += [b"--", boundary.encode("latin-1"), b"--\r\n"]
    return f"multipart/form-data; boundary={boundary}", b"".join(out)
