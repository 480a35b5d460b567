"""Types of recording's loop side (fastproxy/io/_handover.pyx) for Python callers."""

from typing import Any, Callable, Iterable

from fastproxy._core import Head, Route

class Capture:
    """What is kept of one exchange recorded without a flow."""

    t_start: float
    t_request_end: float | None
    request_tee: Any
    response: Head | None
    t_response_start: float
    response_tee: Any

    def __init__(self, request_tee: Any = None) -> None: ...
    def request_ended(self) -> None: ...
    def response_started(self, head: Head, limit: int,
                         make_tee: Callable[[int, Any], Any]) -> Any:
        """Note the response head; return the tee for its body."""
    def add(self, piece: bytes) -> None: ...
    def record(self, exchange: Any, error: str | None = None) -> None:
        """Hand the exchange over to the recorders, once."""
    def data(self, head: Head, route: Route, error: str | None = None) -> tuple:
        """The exchange as the tuple of plain values recorders get."""

class ExchangeSender:
    """Packs captured exchanges, and their connections' states, for the writer."""

    count: int
    max_conns: int

    def __init__(self, on_first: Callable[[], None], on_error: Callable[[str], None],
                 max_conns: int = 4096) -> None: ...
    def __len__(self) -> int: ...
    def __call__(self, client_conn: Any, server_conn: Any, data: tuple) -> None: ...
    def make_room(self) -> None: ...
    def forget(self) -> None:
        """Take no connection as known to the writer: states are sent again."""
    def conn_key(self, conn: Any) -> int: ...
    def take(self) -> tuple[bytes, int]: ...
    def view(self) -> memoryview: ...
    def clear(self) -> None: ...

def tracked_setattr(self: Any, name: str, value: Any) -> None:
    """``object.__setattr__`` that also gives ``self`` a new ``_generation``."""

def pack_all(values: Iterable[Any]) -> bytes:
    """The values, packed one after the other."""
def unpack_all(data: bytes) -> list:
    """The values packed into ``data``, in order."""
