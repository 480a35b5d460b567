"""Bodies in recorded flows: kept up to a limit while they stream through, cut and marked
when they are longer, de-chunked as the flow path would have gathered them."""

from __future__ import annotations

from typing import Any

TRUNCATED_KEY = "fastproxy.truncated"
"""flow.metadata key of recorded flows whose bodies were cut: {"request"|"response": size}."""


def truncate_bodies(state: dict, limit: int) -> None:
    """Cut request and response bodies in a flow state to ``limit`` bytes, and say so.

    The original sizes go to ``metadata["fastproxy.truncated"]`` and a line in the comment,
    which mitmproxy shows.
    """
    cut: dict[str, Any] = {}
    for side in ("request", "response"):
        message = state.get(side)
        content = message and message.get("content")
        if content is not None and len(content) > limit:
            message["content"] = content[:limit]
            cut[side] = len(content)
    if cut:
        mark_truncated(state, cut, limit)


def mark_truncated(state: dict, cut: dict[str, int], limit: int) -> None:
    """Note in a flow state that bodies were cut to ``limit``: ``cut`` maps "request" /
    "response" to their original sizes."""
    state["metadata"] = {**state.get("metadata", {}), TRUNCATED_KEY: cut}
    note = "; ".join(f"{side} body truncated to {limit} of {size} bytes"
                     for side, size in cut.items())
    state["comment"] = f"{state['comment']}\n{note}" if state.get("comment") else note


class BodyTee:
    """Keeps up to ``limit`` bytes of a body the proxy streams through without gathering it
    (``flow.response.stream = True``), so that a recording still has it.

    The HTTP/1 layer `add`s each piece as received, with its transfer framing, and calls
    `attach` at the end: the body, de-chunked, becomes the message's ``raw_content``; if it
    was longer than ``limit``, the flow is marked as `truncate_bodies` marks it.
    """

    __slots__ = ("limit", "pieces", "kept", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pieces: list[bytes] = []
        self.kept = 0
        self.size = 0

    def add(self, data: bytes) -> None:
        self.size += len(data)
        room = self.limit - self.kept
        if room > 0:
            piece = data if len(data) <= room else data[:room]
            self.pieces.append(piece)
            self.kept += len(piece)

    def attach(self, flow: Any, message: Any, side: str = "response") -> None:
        data = b"".join(self.pieces)
        if "chunked" in message.headers.get("transfer-encoding", "").lower():
            data = dechunk(data)
        message.raw_content = data
        if self.size > self.limit:
            flow.metadata[TRUNCATED_KEY] = {**flow.metadata.get(TRUNCATED_KEY, {}),
                                            side: self.size}
            note = f"{side} body truncated to {self.limit} of {self.size} bytes (streamed)"
            flow.comment = f"{flow.comment}\n{note}" if flow.comment else note


def dechunk(data: bytes) -> bytes:
    """The content of a chunked body (RFC 9112 §7.1), as far as ``data`` holds whole chunks
    or parts of one; extensions and trailers are dropped."""
    out, pos = [], 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            break
        try:
            size = int(data[pos:eol].split(b";", 1)[0].strip(), 16)
        except ValueError:
            break
        if size == 0:
            break
        start = eol + 2
        out.append(data[start:start + size])
        pos = start + size + 2
    return b"".join(out)
