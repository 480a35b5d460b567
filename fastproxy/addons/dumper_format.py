"""One flow as mitmdump prints it, for the live console and `fastproxy read`.

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
    raw = response.raw_content
    size = "(content missing)" if raw is None else pretty_size(len(raw))
    return _escape(f"{replay} << {version}{response.status_code} {response.reason} {size}")


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
