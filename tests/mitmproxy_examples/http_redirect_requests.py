"""Redirect HTTP requests to another server."""
import os

from fastproxy import http

TARGET = os.environ.get("REDIRECT_TARGET", "mitmproxy.org")


def request(flow: http.HTTPFlow) -> None:
    # pretty_host takes the "Host" header of the request into account,
    # which is useful in transparent mode where we usually want to redirect
    # based on the host header.
    if flow.request.pretty_host == "example.org":
        flow.request.host = TARGET
        if ":" in TARGET:  # the test's origin listens on a port of its own
            flow.request.host, port = TARGET.split(":")
            flow.request.port = int(port)
