"""Types of the recording ring (fastproxy/io/_ring.pyx) for Python callers."""

from collections.abc import Buffer

HEADER: int

class Ring:
    """A byte ring in shared memory: one process puts, another takes."""

    capacity: int

    def __init__(self, mapping: Buffer) -> None: ...
    def put(self, parts: list[Buffer]) -> int: ...
    def take(self, out: Buffer) -> int: ...
