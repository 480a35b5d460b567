"""Types of the HTTP/1 core (fastproxy/_core.pyx) for Python callers."""

import asyncio
from collections.abc import Callable

NEED_DATA: int
HEAD: int
BODY: int
END: int
CLOSED: int

Field = tuple[bytes, bytes]

class ProtocolError(Exception):
    """The peer sent bytes that are not valid HTTP/1 (or exceed a limit)."""

class Head:
    """The parsed head of one HTTP/1 message (fields as received, in order)."""

    method: bytes | None
    target: bytes | None
    version: bytes
    status_code: int
    reason: bytes | None
    fields: list[Field]
    keep_alive: bool
    content_length: int
    chunked: bool
    has_transfer_encoding: bool
    upgrade: bool
    expect_continue: bool
    has_hop_headers: bool
    host: bytes | None
    connection: bytes | None
    raw: bytes
    transfer_encoding: bytes | None
    upgrade_to: bytes | None
    connection_tokens: frozenset[bytes]

class Route:
    """The upstream of one request and how its head is rewritten for it."""

    scheme: str
    host: str
    port: int
    authority: bytes
    path: bytes
    start_line: bytes
    drop: frozenset[bytes]
    extra: list[Field] | None
    host_header: str | None

    def __init__(self, scheme: str, host: str, port: int, authority: bytes, path: bytes,
                 start_line: bytes, drop: frozenset[bytes], extra: list[Field] | None,
                 host_header: str | None) -> None: ...

class HTTP1Reader:
    """Reads a stream of HTTP/1 requests or responses, one event at a time."""

    is_request: bool
    decode: bool
    max_head_size: int
    max_headers: int
    head: Head | None
    chunk: bytes | None

    def __init__(self, is_request: bool, max_head_size: int = 65536,
                 max_headers: int = 100) -> None: ...
    def feed(self, data: bytes) -> None: ...
    def feed_eof(self) -> None: ...
    @property
    def buffered(self) -> int: ...
    @property
    def in_head(self) -> bool: ...
    @property
    def at_message_start(self) -> bool: ...
    @property
    def at_eof(self) -> bool: ...
    @property
    def body_is_close_delimited(self) -> bool: ...
    @property
    def has_body(self) -> bool: ...
    def peek(self, n: int) -> bytes: ...
    def take_rest(self) -> bytes: ...
    def expect_response_to(self, method: bytes) -> None: ...
    def next_event(self) -> int: ...

class Relay(asyncio.Protocol):
    """One side of a byte tunnel: writes what it reads to the peer's transport."""

    transport: asyncio.Transport | None
    peer: "Relay | None"
    on_close: Callable[["Relay", BaseException | None], object] | None
    bytes_in: int
    eof: bool
    lost: bool

    def start(self) -> None: ...

def head_fields(raw: bytes) -> list[Field]: ...
def lowered_name(name: bytes) -> bytes: ...
def connection_tokens(value: bytes | None) -> frozenset[bytes]: ...
def build_head(start_line: bytes, fields: list[Field], drop: frozenset[bytes] | None,
               extra: list[Field] | None) -> bytes: ...
