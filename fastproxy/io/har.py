"""HAR 1.2 export (http://www.softwareishard.com/blog/har-12-spec/) of HTTP flows.

The output is what browsers' devtools import: every entry has the required fields, times
are in milliseconds and never negative (-1 where HAR allows "not applicable"), and a body
that is not text is base64-encoded (``content.encoding = "base64"``). Request and response
bodies are given with their Content-Encoding undone, as devtools show them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TextIO

import fastproxy

_CONTROL = frozenset(range(32)) - {9, 10, 13}


def to_har(flows: Iterable[Any]) -> dict:
    """A HAR log of the HTTP flows among ``flows`` (others are left out)."""
    seen_servers: set[str] = set()
    entries = [_entry(f, seen_servers) for f in flows if getattr(f, "type", None) == "http"]
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "fastproxy", "version": fastproxy.__version__},
            "pages": [],
            "entries": entries,
        }
    }


def write_har(flows: Iterable[Any], fo: TextIO) -> int:
    """Write the HAR of ``flows`` to ``fo`` as JSON; return the number of entries."""
    har = to_har(flows)
    json.dump(har, fo, indent=2, ensure_ascii=False)
    return len(har["log"]["entries"])


def _entry(flow: Any, seen_servers: set[str]) -> dict:
    timings = _timings(flow, seen_servers)
    entry: dict[str, Any] = {
        "startedDateTime": _iso(flow.request.timestamp_start),
        "time": sum(v for v in timings.values() if v > 0),
        "request": _request(flow.request),
        "response": _response(flow),
        "cache": {},
        "timings": timings,
    }
    if flow.server_conn is not None and flow.server_conn.peername:
        entry["serverIPAddress"] = str(flow.server_conn.peername[0])
        entry["connection"] = str(flow.server_conn.id)
    if flow.comment:
        entry["comment"] = flow.comment
    return entry


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


def _ms(start: float | None, end: float | None) -> float:
    """Milliseconds from start to end; -1 if either is unknown (HAR's "not applicable")."""
    if start is None or end is None:
        return -1
    return max(0.0, round((end - start) * 1000, 3))


def _timings(flow: Any, seen_servers: set[str]) -> dict[str, float]:
    server = flow.server_conn
    connect = ssl = -1.0
    # Connection set-up counts only for the first request on a connection (HAR 1.2 "connect").
    if server is not None and server.timestamp_tcp_setup and server.id not in seen_servers:
        seen_servers.add(server.id)
        connect = _ms(server.timestamp_start, server.timestamp_tcp_setup)
        ssl = _ms(server.timestamp_tcp_setup, server.timestamp_tls_setup)
    request, response = flow.request, flow.response
    send = _ms(request.timestamp_start, request.timestamp_end)
    wait = _ms(request.timestamp_end, response.timestamp_start) if response else -1
    receive = _ms(response.timestamp_start, response.timestamp_end) if response else -1
    # send, wait and receive are required and must not be -1.
    return {"blocked": -1, "dns": -1, "connect": connect, "ssl": ssl,
            "send": max(send, 0), "wait": max(wait, 0), "receive": max(receive, 0)}


def _pairs(pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in pairs]


def _headers_size(message: Any) -> int:
    return len(message.head_bytes()) if message.http_version.startswith("HTTP/1") else -1


def _request(request: Any) -> dict:
    body = request.raw_content
    har: dict[str, Any] = {
        "method": request.method,
        "url": request.pretty_url,
        "httpVersion": request.http_version,
        "cookies": _pairs(request.cookies.items(multi=True)),
        "headers": _pairs(request.headers.items(multi=True)),
        "queryString": _pairs(request.query.items(multi=True)),
        "headersSize": _headers_size(request),
        "bodySize": len(body) if body is not None else -1,
    }
    if body:
        har["postData"] = {
            "mimeType": request.headers.get("content-type", ""),
            "params": _pairs(request.urlencoded_form.items(multi=True)),
            "text": request.get_text(strict=False) or "",
        }
    return har


def _response(flow: Any) -> dict:
    response = flow.response
    if response is None:
        return {
            "status": 0, "statusText": "", "httpVersion": "", "cookies": [], "headers": [],
            "content": {"size": 0, "mimeType": ""}, "redirectURL": "",
            "headersSize": -1, "bodySize": -1,
            "_error": flow.error.msg if flow.error else None,
        }
    raw = response.raw_content
    return {
        "status": response.status_code,
        "statusText": response.reason,
        "httpVersion": response.http_version,
        "cookies": [_set_cookie(name, value, attrs)
                    for name, (value, attrs) in response.cookies.items(multi=True)],
        "headers": _pairs(response.headers.items(multi=True)),
        "content": _content(response),
        "redirectURL": response.headers.get("location", ""),
        "headersSize": _headers_size(response),
        "bodySize": len(raw) if raw is not None else -1,
    }


def _content(response: Any) -> dict:
    """HAR ``content``: the decoded body as text, or base64 if it is not text."""
    raw = response.raw_content
    decoded = response.get_content(strict=False)
    content: dict[str, Any] = {
        "size": len(decoded) if decoded is not None else 0,
        "compression": (len(decoded) - len(raw)) if decoded is not None and raw is not None else 0,
        "mimeType": response.headers.get("content-type", ""),
    }
    if decoded:
        text = _as_text(response, decoded)
        if text is None:
            content["text"] = base64.b64encode(decoded).decode("ascii")
            content["encoding"] = "base64"
        else:
            content["text"] = text
    return content


def _as_text(response: Any, decoded: bytes) -> str | None:
    """The body as text if it decodes in its charset and has no binary control bytes."""
    if any(b in _CONTROL for b in decoded[:4096]):
        return None
    try:
        return response.get_text(strict=True)
    except ValueError:
        return None


def _set_cookie(name: str, value: str, attrs: Any) -> dict:
    cookie: dict[str, Any] = {"name": name, "value": value}
    for key, attr in attrs.items(multi=True):
        key = key.lower()
        if key in ("path", "domain") and attr:
            cookie[key] = attr
        elif key == "expires" and attr:
            cookie["expires"] = _cookie_expiry(attr)
        elif key == "httponly":
            cookie["httpOnly"] = True
        elif key == "secure":
            cookie["secure"] = True
    return cookie


def _cookie_expiry(value: str) -> str:
    """An Expires attribute (RFC 6265 §5.1.1 date) as ISO 8601; left as is if unparsable."""
    try:
        return parsedate_to_datetime(value).isoformat()
    except (TypeError, ValueError):
        return value
