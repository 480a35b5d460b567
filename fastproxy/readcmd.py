"""`fastproxy read` and `fastproxy replay`: what the CLI runs for recorded flow files."""

from __future__ import annotations

import http.client
import ssl
import sys
import urllib.parse
import warnings
from collections.abc import Iterator
from typing import TextIO

from fastproxy import flowfilter
from fastproxy.addons.dumper_format import format_flow_line
from fastproxy.flow import Flow
from fastproxy.io import har
from fastproxy.io.flowfile import FlowFileWarning, FlowReader, recording_paths
from fastproxy.net.replay import send_request


def read_main(path: str, filter_expr: str | None = None, har_path: str | None = None,
              out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """List the flows in a recording one by one as the console does, or export them as HAR.

    ``har_path`` "-" writes the HAR to ``out``. Returns the exit status: 0, or 2 for a bad
    filter or an unreadable file. A torn tail is reported on ``err``, not an error.
    """
    flows = _open_flows(path, filter_expr, err)
    if flows is None:
        return 2
    if har_path is None:
        for flow in flows:
            print(format_flow_line(flow), file=out)
        return 0
    if har_path == "-":
        har.write_har(flows, out)
        return 0
    with open(har_path, "w", encoding="utf-8") as fo:
        count = har.write_har(flows, fo)
    print(f"{count} flows written to {har_path}", file=err)
    return 0


def replay_main(path: str, filter_expr: str | None = None, *, insecure: bool = False,
                timeout: float = 10.0, mode: str | None = None, out: TextIO = sys.stdout,
                err: TextIO = sys.stderr) -> int:
    """Send each recorded HTTP request to its server again and compare the status codes.

    ``mode`` ``reverse:URL`` sends every request to URL's server instead (with its Host).
    Prints one line per request and a summary. Returns 0 if every status matched, 1 if one
    differed or a request failed, 2 for a bad filter, mode or an unreadable file.
    """
    try:
        target = _replay_target(mode)
    except ValueError as e:
        print(f"fastproxy: {e}", file=err)
        return 2
    flows = _open_flows(path, filter_expr, err)
    if flows is None:
        return 2
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    total = differ = 0
    for flow in flows:
        if flow.type != "http" or flow.request.method == "CONNECT":
            continue
        total += 1
        recorded = flow.response.status_code if flow.response is not None else None
        try:
            status: int | str = send_request(flow.request, context, timeout, target)[0]
        except (OSError, http.client.HTTPException) as e:
            status = f"error: {e}"
        same = status == recorded
        differ += not same
        mark = "  " if same else "! "
        print(f"{mark}{flow.request.method} {flow.request.pretty_url}: "
              f"recorded {recorded if recorded is not None else 'no response'}, now {status}",
              file=out)
    print(f"{total} requests replayed, {differ} differ", file=out)
    return 1 if differ else 0


def _replay_target(mode: str | None) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a ``reverse:URL`` mode; None to replay to the recorded servers."""
    if not mode or mode == "regular":
        return None
    kind, _, url = mode.partition(":")
    parts = urllib.parse.urlsplit(url)
    if kind != "reverse" or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"replay takes --mode reverse:http[s]://host[:port], not {mode!r}")
    return parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _open_flows(path: str, filter_expr: str | None, err: TextIO) -> Iterator[Flow] | None:
    """The flows of the recording at ``path`` that match the filter; None after an error."""
    try:
        flt = flowfilter.parse(filter_expr) if filter_expr else None
    except ValueError as e:
        print(f"fastproxy: {e}", file=err)
        return None
    paths = recording_paths(path)
    try:
        files = [open(p, "rb") for p in paths]
    except OSError as e:
        print(f"fastproxy: cannot read {e.filename}: {e.strerror}", file=err)
        return None
    return _stream(files, flt, err)


def _stream(files: list, flt: flowfilter.Filter | None, err: TextIO) -> Iterator[Flow]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FlowFileWarning)  # reported below, once per file
        for fo in files:
            with fo:
                reader = FlowReader(fo)
                for flow in reader.stream():
                    if flt is None or flt(flow):
                        yield flow
            for problem in [*reader.skipped, *([reader.error] if reader.error else [])]:
                print(f"fastproxy: {fo.name}: {problem}", file=err)
