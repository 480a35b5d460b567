"""One flow as mitmdump prints it: the one module that formats flows, for the live console
(`fastproxy.addons.dumper`) and `fastproxy read` alike.

An HTTP flow is the request line, then the response line (or the error) under it::

    127.0.0.1:50312: GET http://example.com/path
     << 200 OK 1.2k

The HTTP version is shown only when it is not HTTP/1 on both sides, as mitmdump does.
"""

from __future__ import annotations

import ipaddress
from typing import Any


def format_flow_line(flow: Any) -> str:
    """The console summary of a finished flow: one line, two for an HTTP exchange."""
    if getattr(flow, "type", None) == "http":
        lines = [_request_line(flow)]
        if flow.response is not None:
            lines.append(_response_line(flow))
        if flow.error is not None:
            lines.append(f" << error: {flow.error.msg}")
        return "\n".join(lines)
    line = f"{format_address(flow.client_conn.peername)} <-> {format_address(flow.server_conn.address)} {flow.type}"
    messages = getattr(flow, "messages", None)
    if messages is not None:
        line += f" ({len(messages)} messages)"
    if flow.error is not None:
        line += f" error: {flow.error.msg}"
    return line


def _request_line(flow: Any) -> str:
    request = flow.request
    version = ""
    response_version = flow.response.http_version if flow.response else request.http_version
    if not request.http_version.startswith("HTTP/1") or request.http_version != response_version:
        version = f" {request.http_version}"
    client = format_address(flow.client_conn.peername)
    return _escape(f"{client}: {request.method} {request.pretty_url}{version}")


def _response_line(flow: Any) -> str:
    response = flow.response
    version = ""
    if not response.http_version.startswith("HTTP/1") or response.http_version != flow.request.http_version:
        version = f"{response.http_version} "
    replay = "[replay]" if flow.is_replay == "response" else ""
    size = _body_size(response)
    return _escape(f"{replay} << {version}{response.status_code} {response.reason} {size}")


def _body_size(response: Any) -> str:
    """The body's size; for a body not kept (streamed past the addons), its Content-Length."""
    raw = response.raw_content
    if raw is not None:
        return pretty_size(len(raw))
    length = response.headers.get("content-length", "")
    return pretty_size(int(length)) if length.isdigit() else "(content missing)"


def format_flow(flow: Any, detail: int = 1) -> str:
    """`format_flow_line`, with headers under each line at ``detail`` 2, and at 3 the
    start of the response body (what the console prints at ``flow_detail``)."""
    if detail < 2 or getattr(flow, "type", None) != "http":
        return format_flow_line(flow)
    lines = format_flow_line(flow).split("\n")
    parts = [lines[0], format_headers(flow.request.headers)]
    if flow.response is not None:
        parts += [lines[1], format_headers(flow.response.headers)]
        body = flow.response.raw_content
        if detail >= 3 and body:
            parts.append(_escape(body[:4096].decode("utf-8", "replace")))
    parts += lines[2 if flow.response is not None else 1:]
    return "\n".join(p.rstrip("\n") for p in parts if p)


def format_headers(headers: Any) -> str:
    """Header fields one per line, indented under the flow line they belong to."""
    return _escape("".join(f"    {name}: {value}\n"
                           for name, value in headers.items(multi=True)))


def format_address(address: tuple | None) -> str:
    """``ip:port``, ``[ipv6]:port``, ``*:port`` for the unspecified address (as mitmproxy)."""
    if not address:
        return "<no address>"
    host, port = address[0], address[1]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return f"{host}:{port}"
    if ip.is_unspecified:
        return f"*:{port}"
    if ip.version == 6:
        mapped = ip.ipv4_mapped  # type: ignore[union-attr]
        return f"{mapped}:{port}" if mapped else f"[{ip}]:{port}"
    return f"{ip}:{port}"


def pretty_size(size: int) -> str:
    """A byte count in at most five characters: ``12b``, ``1.2k``, ``340k``, ``1.5m``."""
    if size < 1024:
        return f"{size}b"
    value = size / 1024
    for suffix in "kmg":
        if value < 99.95:
            return f"{value:.1f}{suffix}"
        if value < 1024:
            return f"{value:.0f}{suffix}"
        value /= 1024
    return f"{value:.1f}t" if value < 99.95 else f"{value:.0f}t"


def _escape(text: str) -> str:
    """Control characters from the wire must not drive the terminal."""
    return "".join(c if c.isprintable() or c == "\n" else f"\\x{ord(c):02x}" for c in text)
