"""Atheris target for `fastproxy._core.HTTP1Reader`: the property of
tests/test_h1_differential.py (see tests/h1_grammar.py), driven by the fuzzer's bytes.

    python fuzz/fuzz_h1_reader.py [libFuzzer flags] [CORPUS_DIR ...]   # fuzz (needs atheris)
    python fuzz/fuzz_h1_reader.py --write-seeds DIR                     # the seed corpus
    python fuzz/fuzz_h1_reader.py --replay [FILE ...]                   # the reader alone
                                                                        # over seeds/files

An input is: one flag byte (bit 0: request, bit 1: build the message with the grammar from
the following bytes, else the rest is the message itself), one byte giving the number of
split points (0-7) and two bytes for each, then the rest. `--replay` runs only the reader
(whole and split) with no h11 and no hypothesis: `make fuzz` runs it under valgrind.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VECTORS = ROOT.parent / "shared" / "conformance" / "llhttp-vectors.json"

HOSTILE = [
    (True, b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n"),
    (True, b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n"),
    (True, b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"),
    (True, b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n"),
    (True, b"GET /\r\n\r\n"),
    (True, b"SOURCE / ICE/1.0\r\nHost: a\r\n\r\n"),
    (True, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\na"),
    (True, (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked"
           b"\r\n\r\n0\r\n\r\n")),
    (True, b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    (True, (b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 1"
           b"\r\n\r\na")),
    (True, (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"fffffffffffffffffffffff\r\na\r\n0\r\n\r\n")),
    (True, (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"1;a=\"b\r\na\r\n0\r\nno colon\r\n\r\n")),
    (True, b"\r\n\r\n\r\nGET / HTTP/1.1\r\n" + b"X: " + b"a" * 70000 + b"\r\n\r\n"),
    (True, b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 200 + b"\r\n"),
    (False, b"HTTP/1.1 099 Low\r\n\r\n"),
    (False, b"HTTP/1.1 2000 OK\r\n\r\n"),
    (False, b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"),
    (False, b"RTSP/1.1 200 OK\r\n\r\n"),
    (False, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc"),
    (False, (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"7fffffffffffffff\r\nab")),
    (False, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
]


def seeds() -> list[tuple[bool, bytes]]:
    """(is_request, bytes): the llhttp vectors (when ../shared is there) and HOSTILE."""
    out = list(HOSTILE)
    if VECTORS.is_file():
        for case in json.loads(VECTORS.read_text()):
            out.append((case["type"].startswith("request"), bytes.fromhex(case["raw_hex"])))
    return out


def encode(is_request: bool, raw: bytes, cuts: list[int] = ()) -> bytes:
    """A raw-mode fuzzer input for a message."""
    cuts = list(cuts)[:7]
    return (bytes([1 if is_request else 0, len(cuts)])
            + b"".join(struct.pack(">H", c & 0xFFFF) for c in cuts) + raw)


def seed_inputs() -> list[bytes]:
    out = []
    for is_request, raw in seeds():
        out.append(encode(is_request, raw))
        out.append(encode(is_request, raw, [len(raw) // 3, len(raw) // 2 + 1]))
    # Grammar-mode seeds: a few byte patterns for the builder.
    for flags in (2, 3):
        for pattern in (b"\x00" * 64, b"\xff" * 64, bytes(range(256)), b"\x10\x80" * 40):
            out.append(bytes([flags, 0]) + pattern)
    return out


def _decode(data: bytes):
    """(is_request, grammar mode, cuts, rest) of a fuzzer input."""
    if len(data) < 2:
        return True, False, [], data
    flags, ncuts = data[0], data[1] % 8
    rest = data[2:]
    cuts = [struct.unpack(">H", rest[2 * i:2 * i + 2].ljust(2, b"\0"))[0]
            for i in range(ncuts)]
    return bool(flags & 1), bool(flags & 2), cuts, rest[2 * ncuts:]


class _Bytes:
    """Choices for the grammar's Builder, taken from a byte string (zeros when it runs
    out)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def pick(self, options):
        return options[self.byte() % len(options)]

    def chance(self, p: float) -> bool:
        return p > 0 and self.byte() < p * 256

    def number(self, lo: int, hi: int) -> int:
        return lo + self.byte() % (hi - lo + 1)


def message_of(data: bytes):
    """(Message, cuts) for a fuzzer input."""
    from tests.h1_grammar import Builder, Message
    is_request, grammar, cuts, rest = _decode(data)
    if grammar:
        source = _Bytes(rest)
        hostile = source.pick([0.0, 0.0, 0.3, 1.0])
        builder = Builder(source.pick, source.chance, source.number, hostile)
        msg = builder.request() if is_request else builder.response()
    else:
        msg = Message(rest, [], is_request)
    return msg, cuts


def TestOneInput(data: bytes) -> None:
    from tests.h1_grammar import check
    msg, cuts = message_of(data)
    check(msg, cuts)


def replay(inputs: list[bytes]) -> int:
    """The reader alone (whole, and split at each input's points and a few more) over
    `inputs`: the valgrind run. Returns how many messages were read."""
    from tests.h1_grammar import run_reader, split
    n = 0
    for data in inputs:
        msg, cuts = message_of(data)
        size = len(msg.raw)
        for pieces in ([msg.raw], split(msg.raw, cuts),
                       split(msg.raw, [1, size // 2, size - 1]),
                       [msg.raw[i:i + 1] for i in range(min(size, 200))] + [msg.raw[200:]]):
            run_reader([p for p in pieces if p], msg.is_request)
            n += 1
    return n


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--write-seeds":
        out = Path(argv[2])
        out.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(seed_inputs()):
            (out / f"seed-{i:04d}").write_bytes(data)
        return 0
    if len(argv) >= 2 and argv[1] == "--replay":
        files = argv[2:]
        inputs = [Path(f).read_bytes() for f in files] if files else seed_inputs()
        print(f"replayed {replay(inputs)} readings of {len(inputs)} inputs")
        return 0
    import atheris
    with atheris.instrument_imports():
        import h11  # noqa: F401  (coverage of h11 guides the fuzzer too)

        import tests.h1_grammar  # noqa: F401
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
