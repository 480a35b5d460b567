"""Typed netstrings, as mitmproxy writes them in its flow files.

A value is ``LENGTH:DATA`` followed by one type byte::

    ,  bytes      ;  str (UTF-8)   #  int      ^  float
    !  bool       ~  None          ]  list     }  dict (key, value, key, value, ...)

Tuples are written as lists; dict keys are written with their own type (mitmproxy's state
dicts use str keys, so they come back as str). This is byte-for-byte what
``mitmproxy.io.tnetstring.dumps`` produces, so either side reads the other's files.

Encoding appends chunks to one list in output order and joins once: a body is copied a
single time, however deep it sits in the state dict. A container's length prefix is a
placeholder that is filled in once its children are encoded. Like mitmproxy, a dict's items
are written last to first. str is UTF-8 with surrogateescape, so any str round-trips.
"""

from typing import BinaryIO, Union

TSerializable = Union[None, str, bool, int, float, bytes, list, tuple, dict]

_MAX_PREFIX_DIGITS = 12  # mitmproxy refuses longer length prefixes too


def dumps(value: TSerializable) -> bytes:
    """Encode ``value`` as one tnetstring."""
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def dump(value: TSerializable, fo: BinaryIO) -> None:
    """Encode ``value`` and write it to the binary file ``fo``."""
    fo.write(dumps(value))


def _encode(value: TSerializable, out: list[bytes]) -> int:
    """Append the encoding of ``value`` to ``out``; return how many bytes were appended."""
    encode = _ENCODERS.get(type(value))
    if encode is None:
        return _encode_other(value, out)
    return encode(value, out)


def _leaf(data: bytes, tag: bytes, out: list[bytes]) -> int:
    n = len(data)
    if n > _COPY_LIMIT:  # a body: don't copy it into a chunk, the final join copies it once
        prefix = b"%d:" % n
        out += (prefix, data, tag)
        return len(prefix) + n + 1
    chunk = b"%d:%s%s" % (n, data, tag)
    out.append(chunk)
    return len(chunk)


def _encode_bytes(value: bytes, out: list[bytes]) -> int:
    if len(value) > _COPY_LIMIT:
        return _leaf(value, b",", out)
    chunk = b"%d:%s," % (len(value), value)
    out.append(chunk)
    return len(chunk)


def _encode_str(value: str, out: list[bytes]) -> int:
    data = value.encode("utf-8", "surrogateescape")
    if len(data) > _COPY_LIMIT:
        return _leaf(data, b";", out)
    chunk = b"%d:%s;" % (len(data), data)
    out.append(chunk)
    return len(chunk)


def _encode_int(value: int, out: list[bytes]) -> int:
    return _leaf(b"%d" % value, b"#", out)


def _encode_float(value: float, out: list[bytes]) -> int:
    return _leaf(repr(value).encode(), b"^", out)  # repr() round-trips exactly


def _encode_constant(value: None | bool, out: list[bytes]) -> int:
    chunk = _CONSTANTS[value]
    out.append(chunk)
    return len(chunk)


def _encode_list(value: list | tuple, out: list[bytes]) -> int:
    slot = len(out)
    out.append(b"")  # the length prefix, known once the items are encoded
    size = 0
    for item in value:
        size += _encode(item, out)
    return _close(out, slot, size, b"]")


def _encode_dict(value: dict, out: list[bytes]) -> int:
    slot = len(out)
    out.append(b"")
    size = 0
    append = out.append
    # mitmproxy writes a dict's items last to first; so do we, to write identical bytes.
    # Keys and None values are inlined: they are most of a flow's state.
    for k, v in reversed(value.items()):
        chunk = _KEY_CHUNKS.get(k) if type(k) is str else None
        if chunk is None:
            chunk = _key_chunk(k)
        append(chunk)
        size += len(chunk)
        if v is None:
            append(b"0:~")
            size += 3
        else:
            size += _encode(v, out)
    return _close(out, slot, size, b"}")


def _key_chunk(key: TSerializable) -> bytes:
    """A dict key's encoding; str keys are remembered (a state has the same few keys)."""
    chunk = dumps(key)
    if type(key) is str and len(_KEY_CHUNKS) < _MAX_KEY_CHUNKS:
        _KEY_CHUNKS[key] = chunk
    return chunk


class Encoded(bytes):
    """An already encoded tnetstring, put into the output as it is.

    The recorder's writer encodes a connection's state once and reuses it in every flow of
    that connection (`fastproxy.io.writer`).
    """


def _encode_encoded(value: Encoded, out: list[bytes]) -> int:
    out.append(value)
    return len(value)


def _close(out: list[bytes], slot: int, size: int, tag: bytes) -> int:
    prefix = b"%d:" % size
    out[slot] = prefix
    out.append(tag)
    return len(prefix) + size + 1


def _encode_other(value: TSerializable, out: list[bytes]) -> int:
    """Subclasses of the base types: an IntEnum, a str enum, a tuple subclass, ..."""
    for base, encode in _ENCODERS.items():
        if base is not bool and isinstance(value, base):
            return encode(base(value) if base in (bytes, str, int, float) else value, out)
    raise ValueError(f"unserializable object: {value!r} ({type(value)})")


_COPY_LIMIT = 4096
_MAX_KEY_CHUNKS = 1024
_KEY_CHUNKS: dict[str, bytes] = {}
_CONSTANTS = {None: b"0:~", True: b"4:true!", False: b"5:false!"}
_ENCODERS = {
    bytes: _encode_bytes,
    str: _encode_str,
    int: _encode_int,
    dict: _encode_dict,
    list: _encode_list,
    tuple: _encode_list,
    float: _encode_float,
    bool: _encode_constant,
    type(None): _encode_constant,
    Encoded: _encode_encoded,
}


def loads(data: bytes) -> TSerializable:
    """Decode one tnetstring that makes up all of ``data``.

    Raises ``ValueError`` on malformed or trailing data.
    """
    data = bytes(data)
    value, end = _decode(data, 0)
    if end != len(data):
        raise ValueError(f"not a tnetstring: {len(data) - end} bytes of trailing data")
    return value


def pop(data: bytes) -> tuple[TSerializable, bytes]:
    """Decode the first tnetstring in ``data``; return it and the bytes that follow."""
    data = bytes(data)
    value, end = _decode(data, 0)
    return value, data[end:]


def load(fo: BinaryIO) -> TSerializable:
    """Read exactly one tnetstring from the binary file ``fo``.

    Raises ``EOFError`` if ``fo`` is at its end before the first byte, ``ValueError`` if
    the data is malformed or ends inside the value (a torn write).
    """
    record = read_record(fo)
    if record is None:
        raise EOFError("no more tnetstrings")
    return loads(record)


def read_record(fo: BinaryIO) -> bytes | None:
    """Read the raw bytes of the next top-level tnetstring from ``fo`` without decoding it.

    Returns ``None`` at a clean end of file; raises ``ValueError`` if the record is
    malformed or cut short.
    """
    head = _read_prefix(fo)
    if head is None:
        return None
    length = int(head[:-1])
    body = fo.read(length + 1)
    if len(body) != length + 1:
        raise ValueError(f"not a tnetstring: {length + 1} bytes expected, {len(body)} found")
    return head + body


def skip_record(fo: BinaryIO) -> bool:
    """Seek past the next top-level tnetstring in the seekable ``fo`` without reading it.

    Returns ``False`` at a clean end of file; raises ``ValueError`` if the record is cut
    short or its type byte is not a known tag.
    """
    head = _read_prefix(fo)
    if head is None:
        return False
    fo.seek(int(head[:-1]), 1)
    tag = fo.read(1)
    if not tag or tag not in _TAGS:
        raise ValueError("not a tnetstring: record cut short or without a type tag")
    return True


def _read_prefix(fo: BinaryIO) -> bytes | None:
    """Read ``LENGTH:`` from ``fo``; ``None`` at end of file, ``ValueError`` if malformed."""
    head = fo.read(1)
    if not head:
        return None
    while head[-1:].isdigit():
        if len(head) > _MAX_PREFIX_DIGITS:
            raise ValueError("not a tnetstring: absurdly large length prefix")
        c = fo.read(1)
        if not c:
            raise ValueError("not a tnetstring: file ends in the length prefix")
        head += c
    if head[-1:] != b":" or len(head) < 2:
        raise ValueError(f"not a tnetstring: invalid length prefix {head[:20]!r}")
    return head


_TAGS = b",;#^!~]}"
_TAG_BYTES, _TAG_STR, _TAG_INT, _TAG_FLOAT = b",;#^"
_TAG_BOOL, _TAG_NONE, _TAG_LIST, _TAG_DICT = b"!~]}"


def _decode(data: bytes, pos: int) -> tuple[TSerializable, int]:
    """Decode the tnetstring at ``data[pos:]``; return the value and the offset after it."""
    colon = data.find(b":", pos, pos + _MAX_PREFIX_DIGITS + 1)
    if colon <= pos or not data[pos:colon].isdigit():
        raise ValueError(f"not a tnetstring: invalid length prefix at offset {pos}")
    start = colon + 1
    end = start + int(data[pos:colon])
    if end >= len(data):
        raise ValueError(f"not a tnetstring: value at offset {pos} runs past the end")
    tag = data[end]
    if tag == _TAG_BYTES:
        return data[start:end], end + 1
    if tag == _TAG_STR:
        return data[start:end].decode("utf-8", "surrogateescape"), end + 1
    if tag == _TAG_LIST:
        return _decode_list(data, start, end), end + 1
    if tag == _TAG_DICT:
        return _decode_dict(data, start, end), end + 1
    return _decode_scalar(tag, data[start:end]), end + 1


def _decode_list(data: bytes, pos: int, end: int) -> list:
    items = []
    while pos < end:
        item, pos = _decode(data, pos)
        items.append(item)
    if pos != end:
        raise ValueError("not a tnetstring: list item runs past the list")
    return items


def _decode_dict(data: bytes, pos: int, end: int) -> dict:
    d = {}
    while pos < end:
        key, pos = _decode(data, pos)
        if pos >= end:
            raise ValueError("not a tnetstring: dict key without a value")
        value, pos = _decode(data, pos)
        d[key] = value
    if pos != end:
        raise ValueError("not a tnetstring: dict item runs past the dict")
    return d


def _decode_scalar(tag: int, raw: bytes) -> TSerializable:
    if tag == _TAG_INT:
        if not raw.lstrip(b"-").isdigit():
            raise ValueError(f"not a tnetstring: invalid integer literal {raw!r}")
        return int(raw)
    if tag == _TAG_FLOAT:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"not a tnetstring: invalid float literal {raw!r}") from None
    if tag == _TAG_BOOL:
        if raw in (b"true", b"false"):
            return raw == b"true"
        raise ValueError(f"not a tnetstring: invalid boolean literal {raw!r}")
    if tag == _TAG_NONE:
        if raw:
            raise ValueError(f"not a tnetstring: invalid null literal {raw!r}")
        return None
    raise ValueError(f"not a tnetstring: unknown type tag {tag!r}")


__all__ = ["dump", "dumps", "load", "loads", "pop", "read_record", "skip_record"]
