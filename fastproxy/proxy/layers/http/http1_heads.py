"""What the HTTP/1 layer writes besides relayed bytes: status lines, the proxy's own
error responses, the sets of fields dropped on the way, and the checks of what an addon
left in a flow before it is sent (a 502, never a header injected into the next hop)."""

from __future__ import annotations

from fastproxy._core import ProtocolError, build_head, lowered_name
from fastproxy.http import Request, Response
from fastproxy.proxy.layers.http.semantics import (
    HOP_BY_HOP,
    HOP_BY_HOP_REFRAMED,
    check_fields,
    check_status,
)

CLOSE_FIELD = [(b"Connection", b"close")]


KEEP_ALIVE_FIELD = [(b"Connection", b"keep-alive")]


class InvalidFlowHeaders(Exception):
    """An addon left a header field that cannot be sent (CR, LF or NUL in a value, a name
    that is not a token): a 502, never a header injected into the next hop."""


def status_line_of(head) -> bytes:
    return b"%s %d %s" % (head.version, head.status_code, head.reason)


def checked_response_line(response: Response) -> bytes:
    """The status line of a flow's response, once what an addon may have changed past
    the model's own checks (the status code, the field list itself) is checked."""
    try:
        check_status(response.status_code)
        check_fields(response.headers.fields)
    except ProtocolError as e:
        raise InvalidFlowHeaders(f"an addon set an invalid response: {e}") from None
    return response.status_line()


def with_host(fields: list, host: bytes) -> list:
    """`fields` with the Host value replaced (in place of the first Host, else first)."""
    replaced = [(name, host) if lowered_name(name) == b"host" else (name, value)
                for name, value in fields]
    if not any(lowered_name(name) == b"host" for name, _ in fields):
        replaced.insert(0, (b"Host", host))
    return replaced


_WITHOUT_HOST: dict[frozenset, frozenset] = {}


def without_host(drop: frozenset) -> frozenset:
    """`drop` less "host" (cached: routes share a few drop sets)."""
    result = _WITHOUT_HOST.get(drop)
    if result is None:
        result = drop - {b"host"}
        if len(_WITHOUT_HOST) < 256:  # Connection-listed names make drop sets vary
            _WITHOUT_HOST[drop] = result
    return result


_DROP_SETS: dict[frozenset, frozenset] = {}


def with_hop_by_hop(tokens: frozenset) -> frozenset:
    """HOP_BY_HOP and the names a Connection field lists (RFC 9110 §7.6.1), cached by
    those names: servers send the same Connection value on every response."""
    drop = _DROP_SETS.get(tokens)
    if drop is None:
        drop = HOP_BY_HOP | tokens
        if len(_DROP_SETS) < 256:
            _DROP_SETS[tokens] = drop
    return drop


def reframed_drop(fields: list) -> frozenset:
    """Hop-by-hop and framing fields, and those a Connection field lists (RFC 9110 §7.6.1)."""
    listed = {t.strip().lower() for name, value in fields if name.lower() == b"connection"
              for t in value.split(b",")}
    return HOP_BY_HOP_REFRAMED | listed if listed else HOP_BY_HOP_REFRAMED


def check_flow_request(request: Request) -> None:
    """Refuse header fields an addon made unsendable by changing `headers.fields`
    itself (the model checks what is assigned through it; see InvalidFlowHeaders)."""
    try:
        check_fields(request.headers.fields)
    except ProtocolError as e:
        raise InvalidFlowHeaders(f"an addon set an invalid request: {e}") from None


def serialize_response(response: Response, close: bool) -> bytes:
    """A whole response (head and body, Content-Length framed) as bytes."""
    body = response.raw_content or b""
    extra = [(b"Content-Length", str(len(body)).encode())]
    if close:
        extra += CLOSE_FIELD
    return build_head(checked_response_line(response), list(response.headers.fields),
                      HOP_BY_HOP_REFRAMED, extra) + body


def error_response(status: int, message: str, close: bool = True) -> bytes:
    body = (message + "\n").encode("utf-8", "replace")
    reason = {400: b"Bad Request", 413: b"Payload Too Large", 502: b"Bad Gateway",
              504: b"Gateway Timeout", 405: b"Method Not Allowed"}.get(status, b"Error")
    fields = [(b"Content-Type", b"text/plain; charset=utf-8"),
              (b"Content-Length", str(len(body)).encode())]
    if close:
        fields.append((b"Connection", b"close"))
    return build_head(b"HTTP/1.1 %d %s" % (status, reason), fields, None, None) + body
