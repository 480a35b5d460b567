"""Types of the writer's encoder (fastproxy/io/_encode.pyx) for Python callers."""

class FlowBuffer:
    """Encoded flow records, appended one after the other; `take` empties it."""

    def __len__(self) -> int: ...
    def take(self) -> bytes:
        """Everything appended so far; the buffer is empty after."""
    def clear(self) -> None:
        """Empty the buffer (BufferError while a memoryview of it is held)."""
    def append(self, record: bytes) -> None:
        """Append an already encoded record."""
    def exchange(self, data: tuple, client_conn: bytes, server_conn: bytes,
                 limit: int | None) -> bool:
        """Append the record of a captured exchange (`fastproxy.io._handover.Capture.data`)
        with these encoded connection states; False, with nothing appended, when a body
        is longer than ``limit``."""

def _float_leaf(value: float | None) -> bytes:
    """How a float is encoded (for tests): as ``tnetstring.dumps(value)``."""

FIELD_NUMBERS: dict[str, int]
"""The encoder's number of each exchange field, by `fastproxy.io.flowstate.EXCHANGE`'s name."""

def encode_exchange(data: tuple, client_conn: bytes, server_conn: bytes) -> bytes:
    """The record written for the exchange ``data`` with these encoded connection states
    (no body limit): what `fastproxy.io.flowstate.check_encoder` checks at import."""
