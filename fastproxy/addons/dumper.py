"""The console: one line per flow, as mitmdump prints it (`flow_detail` for more)."""

from __future__ import annotations

import sys
from typing import TextIO

from fastproxy.http import HTTPFlow


def format_size(size: int) -> str:
    """A byte count as mitmdump shows it: 12b, 3.4k, 1.2m."""
    for unit, scale in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}{unit}"
    return f"{size}b"


def format_flow(flow: HTTPFlow) -> str:
    """`client: METHOD url` and below it `<< status reason size` (or the error)."""
    request = flow.request
    peer = flow.client_conn.peername if flow.client_conn else None
    who = f"{peer[0]}:{peer[1]}: " if peer else ""
    line = f"{who}{request.method} {request.pretty_url}"
    if flow.response is not None:
        response = flow.response
        size = len(response.raw_content) if response.raw_content is not None else \
            int(response.headers.get("content-length", "0") or 0)
        line += f"\n << {response.status_code} {response.reason} {format_size(size)}"
    elif flow.error is not None:
        line += f"\n << {flow.error.msg}"
    return line


def format_headers(headers) -> str:
    return "".join(f"    {name}: {value}\n" for name, value in headers.items(multi=True))


class Dumper:
    """Prints every finished flow; needs no bodies, so it keeps streaming fast."""

    needs_bodies = False

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.detail = 1
        self.listening = True

    def configure(self, options, updated) -> None:
        if "flow_detail" in updated:
            self.detail = options.flow_detail
            self.listening = self.detail > 0

    def response(self, flow: HTTPFlow) -> None:
        self._print(flow)

    def error(self, flow: HTTPFlow) -> None:
        if flow.response is None:
            self._print(flow)

    def _print(self, flow: HTTPFlow) -> None:
        text = format_flow(flow)
        if self.detail >= 2:
            text = text.replace("\n", "\n" + format_headers(flow.request.headers), 1) \
                if flow.response else text + "\n" + format_headers(flow.request.headers)
            if flow.response is not None:
                text += "\n" + format_headers(flow.response.headers)
        if self.detail >= 3 and flow.response is not None and flow.response.raw_content:
            text += "\n" + flow.response.raw_content[:4096].decode("utf-8", "replace")
        print(text, file=self.out, flush=True)
