"""String helpers addons use (mitmproxy.utils.strutils): escaping bytes for display."""

from __future__ import annotations

import codecs
import re
from typing import Any


def always_bytes(value: Any, *encode_args: Any) -> Any:
    """`value` as bytes (str encoded with `encode_args`, default utf-8); None stays None."""
    if isinstance(value, bytes) or value is None:
        return value
    if isinstance(value, str):
        return value.encode(*encode_args or ("utf-8", "surrogateescape"))
    raise TypeError(f"Expected str or bytes, but got {type(value).__name__}.")


def always_str(value: Any, *decode_args: Any) -> Any:
    """`value` as str (bytes decoded with `decode_args`, default utf-8); None stays None."""
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, bytes):
        return value.decode(*decode_args or ("utf-8", "surrogateescape"))
    raise TypeError(f"Expected str or bytes, but got {type(value).__name__}.")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape_control_characters(text: str, keep_spacing: bool = True) -> str:
    """Replace control characters (but tab/newline if `keep_spacing`) with U+FFFD."""
    def repl(match: re.Match) -> str:
        ch = match.group(0)
        return ch if keep_spacing and ch in "\t\n\r" else "\ufffd"
    return _CONTROL.sub(repl, text)


def bytes_to_escaped_str(data: bytes, keep_spacing: bool = False, escape_single_quotes: bool = False) -> str:
    """Printable ASCII as is, everything else as Python escapes (``b'\\x00'`` -> ``\\x00``)."""
    if not isinstance(data, bytes):
        raise ValueError(f"data must be bytes, but is {data.__class__.__name__}")
    ret = repr(b"'" + data)[3:-1]  # a leading ' forces repr to use double quotes
    if not escape_single_quotes:
        ret = ret.replace("\\'", "'")
    if keep_spacing:
        ret = re.sub(r"(?<!\\)(\\\\)*\\([nrt])",
                     lambda m: (m.group(1) or "") + {"n": "\n", "r": "\r", "t": "\t"}[m.group(2)], ret)
    return ret


def escaped_str_to_bytes(data: str) -> bytes:
    """The inverse of `bytes_to_escaped_str`."""
    if not isinstance(data, str):
        raise ValueError(f"data must be str, but is {data.__class__.__name__}")
    return codecs.escape_decode(data)[0]  # type: ignore[attr-defined]


def is_mostly_bin(data: bytes) -> bool:
    """True if more than 30% of the first 100 bytes are not printable ASCII."""
    sample = data[:100]
    return sum(1 for b in sample if b < 9 or 13 < b < 32 or b > 126) / max(len(sample), 1) > 0.3


def clean_bin(data: Any, keep_spacing: bool = True) -> Any:
    """Bytes or str with non-printable characters replaced by '.'."""
    if isinstance(data, str):
        return escape_control_characters(data, keep_spacing)
    keep = b"\n\r\t" if keep_spacing else b""
    return bytes(b if 31 < b < 127 or b in keep else ord(".") for b in data)


__all__ = ["always_bytes", "always_str", "bytes_to_escaped_str", "clean_bin",
           "escape_control_characters", "escaped_str_to_bytes", "is_mostly_bin"]
