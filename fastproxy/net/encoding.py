"""HTTP content codings (RFC 9110 §8.4.1): decode and encode message bodies.

identity, gzip and deflate are always available; br and zstd only when a module that
provides them (brotli / brotlicffi, zstandard / compression.zstd) is importable: fastproxy
adds no dependency for them. A header may list several codings ("gzip, br"): they were
applied in order, so they are undone in reverse (RFC 9110 §8.4).

Every failure is a ``ValueError`` naming the coding, so callers need catch one type.
"""

from __future__ import annotations

import gzip
import importlib
import io
import zlib
from collections.abc import Callable
from types import ModuleType

Codec = Callable[[bytes], bytes]


def _optional(*names: str) -> ModuleType | None:
    """The first of these modules that imports, or None."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


_brotli = _optional("brotli", "brotlicffi")
_zstd = _optional("compression.zstd", "zstandard")


def _identity(data: bytes) -> bytes:
    return data


def _decode_gzip(data: bytes) -> bytes:
    # gzip.decompress reads concatenated members, as RFC 1952 §2.2 allows.
    return gzip.decompress(data) if data else b""


def _encode_gzip(data: bytes) -> bytes:
    # mtime=0 keeps the output deterministic, so equal bodies encode equally.
    return gzip.compress(data, mtime=0)


def _decode_deflate(data: bytes) -> bytes:
    """RFC 9110 says zlib-wrapped (RFC 1950); some servers send raw RFC 1951 data."""
    if not data:
        return b""
    try:
        return zlib.decompress(data)
    except zlib.error:
        return zlib.decompress(data, -zlib.MAX_WBITS)


def _encode_deflate(data: bytes) -> bytes:
    return zlib.compress(data)


def _decode_brotli(data: bytes) -> bytes:
    return _brotli.decompress(data) if data else b""  # type: ignore[union-attr]


def _encode_brotli(data: bytes) -> bytes:
    return _brotli.compress(data)  # type: ignore[union-attr]


def _decode_zstd(data: bytes) -> bytes:
    if not data:
        return b""
    if _zstd.__name__ == "zstandard":  # type: ignore[union-attr]
        # Its one-shot decompress needs the size in the frame header; a stream reader
        # does not, and reads every frame (RFC 8878 §3.1).
        stream = io.BytesIO(data)
        reader = _zstd.ZstdDecompressor().stream_reader(stream, read_across_frames=True)  # type: ignore[union-attr]
        return reader.read()
    return _zstd.decompress(data)  # type: ignore[union-attr]


def _encode_zstd(data: bytes) -> bytes:
    return _zstd.compress(data)  # type: ignore[union-attr]


_DECODERS: dict[str, Codec] = {
    "identity": _identity,
    "none": _identity,
    "gzip": _decode_gzip,
    "x-gzip": _decode_gzip,
    "deflate": _decode_deflate,
    "deflateraw": _decode_deflate,
}
_ENCODERS: dict[str, Codec] = {
    "identity": _identity,
    "none": _identity,
    "gzip": _encode_gzip,
    "x-gzip": _encode_gzip,
    "deflate": _encode_deflate,
    "deflateraw": _encode_deflate,
}
if _brotli is not None:
    _DECODERS["br"], _ENCODERS["br"] = _decode_brotli, _encode_brotli
if _zstd is not None:
    _DECODERS["zstd"], _ENCODERS["zstd"] = _decode_zstd, _encode_zstd

SUPPORTED: frozenset[str] = frozenset(_DECODERS)
"""The content codings this process can decode and encode (lower case)."""

# One (encoding, encoded, decoded) entry: `m.content = m.content.replace(a, b)` with no
# match then re-encodes nothing, and returns the original compressed bytes unchanged.
_last: tuple[str, bytes, bytes] | None = None


def _codings(encoding: str) -> list[str]:
    """The codings named in a Content-Encoding value, lower case, in applied order."""
    return [c.strip().lower() for c in encoding.split(",") if c.strip()]


def _run(table: dict[str, Codec], codings: list[str], data: bytes, verb: str) -> bytes:
    for coding in codings:
        codec = table.get(coding)
        if codec is None:
            raise ValueError(f"cannot {verb} unsupported content-encoding {coding!r}")
        try:
            data = codec(data)
        except Exception as e:  # zlib.error, OSError, EOFError, brotli.error, ...
            raise ValueError(f"invalid {coding} data, cannot {verb}: {e}") from e
    return data


def decode(data: bytes, encoding: str) -> bytes:
    """Undo the content coding(s) named by ``encoding`` (a Content-Encoding value).

    Raises ``ValueError`` for an unsupported coding or data that does not decode.
    """
    global _last
    if _last is not None and _last[0] == encoding and _last[1] == data:
        return _last[2]
    decoded = _run(_DECODERS, _codings(encoding)[::-1], data, "decode")
    _last = (encoding, data, decoded)
    return decoded


def encode(data: bytes, encoding: str) -> bytes:
    """Apply the content coding(s) named by ``encoding`` (a Content-Encoding value).

    Raises ``ValueError`` for an unsupported coding.
    """
    global _last
    if _last is not None and _last[0] == encoding and _last[2] == data:
        return _last[1]
    encoded = _run(_ENCODERS, _codings(encoding), data, "encode")
    _last = (encoding, encoded, data)
    return encoded


__all__ = ["SUPPORTED", "decode", "encode"]
