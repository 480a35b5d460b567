"""Proxy authentication (`--proxyauth`), as mitmproxy's: `user:pass` or `@htpasswd-file`.

HTTP clients (regular and upstream modes) authenticate with `Proxy-Authorization: Basic`
(RFC 9110 §11.7.1, §11.2 for the 407 challenge); SOCKS5 clients with RFC 1929
username/password. A connection authenticates once, on its first request (or CONNECT):
what follows on it is the same client. Missing or wrong credentials are logged with the
client's address and get 407 (HTTP) or the RFC 1929 failure status.

An htpasswd file may hold bcrypt (`$2y$`, `$2b$`, `$2a$`) and SHA1 (`{SHA}`) entries, as
`htpasswd -B` and `htpasswd -s` write them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from pathlib import Path

import bcrypt

from fastproxy._core import build_head, lowered_name
from fastproxy.log import logger

Validator = Callable[[str, str], bool]

_CHALLENGE = b'Basic realm="fastproxy"'


def make_validator(spec: str | None) -> Validator | None:
    """The credential check for a `proxyauth` value (None: no authentication).

    Raises ValueError with the reason for a bad spec or htpasswd file.
    """
    if not spec:
        return None
    if spec.startswith("@"):
        return _htpasswd_validator(Path(spec[1:]).expanduser())
    user, sep, password = spec.partition(":")
    if not sep or not user:
        raise ValueError(f"invalid proxyauth {spec!r}: expected user:pass or @htpasswd-file")
    expected = (user.encode(), password.encode())

    def check(u: str, p: str) -> bool:
        return hmac.compare_digest(u.encode(), expected[0]) & \
            hmac.compare_digest(p.encode(), expected[1])
    return check


def _htpasswd_validator(path: Path) -> Validator:
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise ValueError(f"invalid proxyauth: cannot read htpasswd file {path}: {e}") from None
    entries: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not hashed.startswith(("{SHA}", "$2")):
            raise ValueError(f"invalid proxyauth: {path}:{number}: only bcrypt and "
                             "{SHA} entries are supported")
        entries[user] = hashed

    def check(user: str, password: str) -> bool:
        hashed = entries.get(user)
        return hashed is not None and _check_hash(hashed, password)
    return check


def _check_hash(hashed: str, password: str) -> bool:
    if hashed.startswith("{SHA}"):
        digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
        return hmac.compare_digest(digest, hashed[5:])
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


def parse_basic(value: bytes | None) -> tuple[str, str] | None:
    """(user, password) of a `Basic` credential (RFC 7617), None if absent or malformed."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def basic_credential(userpass: str) -> bytes:
    """The `Proxy-Authorization` value for `user:pass`."""
    return b"Basic " + base64.b64encode(userpass.encode("utf-8"))


def take_proxy_authorization(fields: list) -> bytes | None:
    """Remove every Proxy-Authorization field from `fields` (it is for this proxy, not
    the next hop); return the first value."""
    value = None
    for i in range(len(fields) - 1, -1, -1):
        if lowered_name(fields[i][0]) == b"proxy-authorization":
            value = fields[i][1]
            del fields[i]
    return value


def response_407(message: str) -> bytes:
    body = (message + "\n").encode()
    return build_head(b"HTTP/1.1 407 Proxy Authentication Required", [
        (b"Proxy-Authenticate", _CHALLENGE), (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", str(len(body)).encode()), (b"Connection", b"close")],
        None, None) + body


def log_failure(peer: tuple, kind: str, user: str | None) -> None:
    who = f"user {user!r}" if user is not None else "no credentials"
    logger.warning("%s:%d: proxy authentication failed (%s, %s)", peer[0], peer[1], kind, who)


class AuthMixin:
    """For `HttpLayer`: the first request of a connection must authenticate (407)."""

    authenticated = False
    validator: Validator  # set by the server when it makes the layer

    async def exchange(self, head) -> bool:  # type: ignore[override]
        fields = head.fields
        value = take_proxy_authorization(fields)
        if not self.authenticated:
            credentials = parse_basic(value)
            if credentials is None or not self.validator(*credentials):
                log_failure(self.ctx.client_conn.peername, "http",
                            credentials[0] if credentials else None)
                client = self.ctx.client
                if not client.closed:
                    client.write(response_407("Proxy authentication required"))
                    client.transport.close()
                return False
            self.authenticated = True
        return await super().exchange(head)  # type: ignore[misc]
