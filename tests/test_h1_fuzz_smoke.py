"""The fuzz target's property (fuzz/fuzz_h1_reader.py), in process and bounded, with no
atheris: over its seed corpus (llhttp's vectors from ../shared/conformance, hostile heads,
grammar seeds) and 200 seeded random mutations of it. `make fuzz` runs the real fuzzer."""

from __future__ import annotations

import importlib.util
import os
import random
from pathlib import Path

import pytest

FUZZ_TARGET = Path(__file__).resolve().parents[1] / "fuzz" / "fuzz_h1_reader.py"
MUTATIONS = 200
INTERESTING = b"\r\n\x00 \t:;=\"\\,\x7f\x80\xff0123456789abcdefHTTP/1."


def _load_target():
    spec = importlib.util.spec_from_file_location("fuzz_h1_reader", FUZZ_TARGET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


target = _load_target()


def _failures(inputs: list[bytes]) -> list[str]:
    out = []
    for data in inputs:
        try:
            target.TestOneInput(data)
        except AssertionError as e:
            out.append(f"input {data!r}:\n{e}")
    return out


def _report(failures: list[str], total: int) -> str:
    shown = "\n\n".join(f[:1500] for f in failures[:12])
    return f"{len(failures)} of {total} inputs break the property:\n\n{shown}"


def test_seed_corpus():
    if not target.VECTORS.is_file():
        message = f"{target.VECTORS} is absent: only the built-in seeds run"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {message}")
    inputs = target.seed_inputs()
    failures = _failures(inputs)
    assert not failures, _report(failures, len(inputs))


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # replace a byte
            buf[min(pos, len(buf) - 1)] = rng.choice(INTERESTING)
        elif op == 1:  # insert an interesting byte
            buf[pos:pos] = bytes([rng.choice(INTERESTING)])
        elif op == 2 and buf:  # delete a run
            del buf[pos:pos + rng.randint(1, 4)]
        elif op == 3 and buf:  # duplicate a slice
            start = rng.randrange(len(buf))
            buf[pos:pos] = buf[start:start + rng.randint(1, 16)]
        elif op == 4:  # splice in part of another input
            other = rng.choice(corpus)
            start = rng.randrange(len(other) + 1)
            buf[pos:] = other[start:]
        elif op == 5 and buf:  # flip the mode byte (request/response, raw/grammar)
            buf[0] ^= rng.choice((1, 2, 3))
    return bytes(buf)


def test_random_mutations():
    rng = random.Random(20240601)
    corpus = [s for s in target.seed_inputs() if len(s) < 5000]
    inputs = [mutate(rng, rng.choice(corpus), corpus) for _ in range(MUTATIONS)]
    failures = _failures(inputs)
    assert not failures, _report(failures, len(inputs))
