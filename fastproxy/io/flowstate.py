"""The layout of a recorded HTTP flow, defined once: the state dict mitmproxy's flow files
hold (``HTTPFlow.get_state()``), and the fields of a recorded exchange.

An *exchange*, in recording, is one HTTP/1 request and its response (or error) captured
on the fast path without a flow (`fastproxy.io.capture`), handed to the writer process as
the `EXCHANGE` fields, in that order (`fastproxy.io._handover.Capture.pack`), and written
by the writer as the HTTP flow state it stands for.

The tables below are the layout. What writes it is generated from them or checked
against them when it is imported:

- `http_flow`, `request`, `response`, `error` build the state dicts, keys in table order
  (the order the flow file has them in); they are generated here, keyword-only, so a
  missing or unknown field is a TypeError. ``HTTPFlow.get_state`` (`of_http_flow`), the
  recorder's snapshot of a flow on the loop (the same, without its connections) and the
  writer's `exchange_state` use them.
- The C encoder (`fastproxy.io._encode`, which writes the same records without building
  a dict) checks at import that its exchange fields are `EXCHANGE`, with the types listed
  there, and that the record it writes for a sample exchange is `exchange_state`'s
  (`check_encoder`).

This module runs in the writer process too: it imports nothing from the proxy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastproxy._core import head_fields
from fastproxy.ids import new_id
from fastproxy.io.bodies import dechunk, mark_truncated

FLOW_FORMAT_VERSION = 21
"""mitmproxy 11's flow format version (mitmproxy/version.py; io/compat.py's last step
20->21): the one definition, which `fastproxy.flow` imports."""

HTTP_FLOW = ("version", "type", "id", "error", "client_conn", "server_conn", "intercepted",
             "is_replay", "marked", "metadata", "comment", "timestamp_created", "backup",
             "request", "response", "websocket")
REQUEST = ("http_version", "headers", "content", "trailers", "timestamp_start",
           "timestamp_end", "host", "port", "method", "scheme", "authority", "path")
RESPONSE = ("http_version", "headers", "content", "trailers", "timestamp_start",
            "timestamp_end", "status_code", "reason")
ERROR = ("msg", "timestamp")

EXCHANGE = (
    # name, the types the encoder takes (`fastproxy.io._encode`'s P_* letters: d float,
    # b bytes, s str, i int, l list, T a bool, N None; header fields come as the raw head
    # (bytes) or as a list of (name, value) pairs)
    ("t_start", "d"), ("method", "b"), ("scheme", "s"), ("host", "s"), ("port", "i"),
    ("authority", "b"), ("path", "b"), ("version", "b"), ("fields", "lb"),
    ("host_header", "sN"), ("req_body", "bN"), ("req_size", "i"), ("req_chunked", "T"),
    ("t_req_end", "dN"),
    ("resp_version", "bN"), ("status", "iN"), ("reason", "bN"), ("resp_fields", "lbN"),
    ("t_resp_start", "dN"), ("resp_body", "bN"), ("resp_size", "iN"),
    ("resp_chunked", "TN"), ("t_resp_end", "dN"), ("error", "sN"), ("t_error", "d"),
)
"""The fields of a recorded exchange, in the order they are packed."""

EXCHANGE_NAMES = tuple(name for name, _ in EXCHANGE)


def _builder(name: str, keys: tuple[str, ...], **constants: Any) -> Callable[..., dict]:
    """A function taking the ``keys`` (but ``constants``) as keyword-only arguments and
    returning the dict of them in table order (made as `collections.namedtuple` makes
    its methods: a dict display, as fast as one written by hand)."""
    args = [key for key in keys if key not in constants]
    items = ", ".join(f"{key!r}: {'_' + key if key in constants else key}" for key in keys)
    source = f"def {name}(*, {', '.join(args)}):\n    return {{{items}}}\n"
    namespace = {"_" + key: value for key, value in constants.items()}
    exec(source, namespace)  # noqa: S102 - source made from the tables above
    fn = namespace[name]
    fn.__module__ = __name__
    fn.__doc__ = f"The state dict of {name.replace('_', ' ')}: keys {keys}."
    return fn


http_flow = _builder("http_flow", HTTP_FLOW, version=FLOW_FORMAT_VERSION, type="http")
request = _builder("request", REQUEST)
response = _builder("response", RESPONSE)
error = _builder("error", ERROR)


def of_http_flow(flow: Any, client_conn: dict | None, server_conn: dict | None, *,
                 copied: bool) -> dict:
    """The state of the `fastproxy.http.HTTPFlow` ``flow`` with these connection states.
    ``copied``: its metadata and backup deep-copied (``get_state``: the state must not
    change with the flow); else as they are (the recorder pickles them at once)."""
    metadata, backup = flow.metadata, flow._backup
    if copied:
        metadata = copy.deepcopy(metadata) if metadata else {}
        backup = None if backup is None else copy.deepcopy(backup)
    failed = flow.error
    return http_flow(
        id=flow.id,
        error=None if failed is None else failed.get_state(),
        client_conn=client_conn,
        server_conn=server_conn,
        intercepted=flow.intercepted,
        is_replay=flow.is_replay,
        marked=flow.marked,
        metadata=metadata or {},
        comment=flow.comment,
        timestamp_created=flow.timestamp_created,
        backup=backup,
        request=flow.request.get_state(),
        response=None if flow.response is None else flow.response.get_state(),
        websocket=None if flow.websocket is None else flow.websocket.get_state(),
    )


# -- in the writer process --------------------------------------------------------------

def exchange_state(data: tuple, client_conn: Any, server_conn: Any,
                   limit: int | None) -> dict:
    """The state ``HTTPFlow.get_state()`` has for the exchange ``data`` (its `EXCHANGE`
    fields) with these connection states, bodies longer than ``limit`` cut and marked as
    `fastproxy.io.bodies.truncate_bodies` does. The C encoder writes the same (checked at
    its import); this is its rare path, for bodies to cut."""
    if len(data) != len(EXCHANGE):
        raise ValueError(f"an exchange has {len(EXCHANGE)} fields")
    x = dict(zip(EXCHANGE_NAMES, data))
    fields, resp_fields = x["fields"], x["resp_fields"]
    if type(fields) is bytes:  # the raw heads, as `Capture` keeps them
        fields = head_fields(fields)
    if type(resp_fields) is bytes:
        resp_fields = head_fields(resp_fields)
    cut: dict[str, int] = {}
    state = http_flow(
        id=new_id(),
        error=None if x["error"] is None else error(msg=x["error"], timestamp=x["t_error"]),
        client_conn=client_conn,
        server_conn=server_conn,
        intercepted=False,
        is_replay=None,
        marked="",
        metadata={},
        comment="",
        timestamp_created=x["t_start"],
        backup=None,
        request=request(
            http_version=x["version"],
            headers=request_headers(fields, x["host_header"]),
            content=_content(x["req_body"], x["req_size"], x["req_chunked"], limit,
                             "request", cut),
            trailers=None,
            timestamp_start=x["t_start"],
            timestamp_end=x["t_req_end"],
            host=x["host"],
            port=x["port"],
            method=x["method"],
            scheme=x["scheme"].encode(),
            authority=x["authority"],
            path=x["path"],
        ),
        response=None if x["status"] is None else response(
            http_version=x["resp_version"],
            headers=tuple(map(tuple, resp_fields)),
            content=_content(x["resp_body"], x["resp_size"], x["resp_chunked"], limit,
                             "response", cut),
            trailers=None,
            timestamp_start=x["t_resp_start"],
            timestamp_end=x["t_resp_end"],
            status_code=x["status"],
            reason=x["reason"],
        ),
        websocket=None,
    )
    if cut:
        mark_truncated(state, cut, limit)
    return state


def _content(body: bytes | None, size: int, chunked: bool, limit: int | None, side: str,
             cut: dict[str, int]) -> bytes | None:
    """The body as the flow path gathers it (without transfer coding), cut to ``limit``;
    a cut body's full size (``size``, as the tee counted it) goes in ``cut``."""
    if body is None:
        return None
    content = dechunk(body) if chunked else body
    if limit is not None and size > limit:
        cut[side] = size
        return content[:limit]
    return content


def request_headers(fields: list, host_header: str | None) -> tuple:
    """The request's fields as the flow path has them: with ``host_header``, every Host
    value replaced where it stands, or a Host field first if there was none (as the
    HTTP/1 layer rewrites it in reverse mode)."""
    if host_header is None:
        return tuple(map(tuple, fields))
    host = host_header.encode()
    replaced = tuple((name, host) if name.lower() == b"host" else (name, value)
                     for name, value in fields)
    if not any(name.lower() == b"host" for name, _ in fields):
        replaced = ((b"Host", host),) + replaced
    return replaced


# -- the checks -------------------------------------------------------------------------

SAMPLE = (
    1700000000.25, b"POST", "http", "example.com", 8080, b"example.com:8080", b"/p?q=1",
    b"HTTP/1.1", b"POST /p?q=1 HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\n\r\n",
    "origin.test", b"3\r\nabc\r\n0\r\n\r\n", 3, True, 1700000000.5,
    b"HTTP/1.1", 404, b"Not Found", b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n",
    1700000000.75, b"no", 2, False, 1700000001.0, "connection lost", 1700000001.25,
)
"""An exchange every key of the layout is written for (a response and an error too)."""


def check_encoder(encode: Callable[[tuple, bytes, bytes], bytes], kinds: bytes,
                  names: tuple[str, ...]) -> None:
    """Check the C encoder against the tables: its exchange fields (``names``, in the
    order of its field numbers, and their types ``kinds``, three letters a field) are
    `EXCHANGE`, and ``encode(data, client_state, server_state)`` (encoded states in,
    the record out) writes what `exchange_state` gives, key for key and in order (the id
    aside: a new one each time). RuntimeError says where they disagree."""
    from fastproxy.io import tnetstring

    if names != EXCHANGE_NAMES:
        raise RuntimeError(f"the encoder's exchange fields {names} are not {EXCHANGE_NAMES}")
    for i, (name, types) in enumerate(EXCHANGE):
        theirs = kinds[3 * i:3 * i + 3].decode()
        if set(theirs) != set(types):
            raise RuntimeError(f"the encoder takes {theirs!r} for exchange field {name!r},"
                               f" the layout {types!r}")
    conn = {"id": "c"}
    written, rest = tnetstring.pop(encode(SAMPLE, tnetstring.dumps(conn),
                                          tnetstring.dumps(conn)))
    # Through tnetstring too: what is compared is the order keys are read back in.
    expected = tnetstring.pop(tnetstring.dumps(exchange_state(SAMPLE, conn, conn, None)))[0]
    if rest or not written.pop("id") or not expected.pop("id"):
        raise RuntimeError("the encoder wrote no single record with an id")
    _same_layout(written, expected, "flow")


def _same_layout(written: Any, expected: Any, where: str) -> None:
    if type(expected) is dict:
        if type(written) is not dict or list(written) != list(expected):
            raise RuntimeError(f"the encoder writes {where} with the keys "
                               f"{list(written) if type(written) is dict else written!r}, "
                               f"the layout with {list(expected)}")
        for key, value in expected.items():
            _same_layout(written[key], value, f"{where}.{key}")
    elif written != expected:
        raise RuntimeError(f"the encoder writes {where} as {written!r}, the layout as "
                           f"{expected!r}")
