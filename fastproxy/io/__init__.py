"""Recording and reading flows. ``fastproxy.io.FlowReader`` / ``FlowWriter`` (mitmproxy's
``io`` names) are loaded on first use, so the recorder's imports stay as they are."""

from typing import Any

_LAZY = {"FlowReader": "fastproxy.io.flowfile", "FlowWriter": "fastproxy.io.flowfile",
         "FlowFileWarning": "fastproxy.io.flowfile"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "read_flows_from_paths":
        return read_flows_from_paths
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def read_flows_from_paths(paths: list) -> list:
    """Every flow of the flow files `paths` (mitmproxy's io.read_flows_from_paths)."""
    from fastproxy.io.flowfile import FlowReader
    flows = []
    for path in paths:
        with open(path, "rb") as fo:
            flows.extend(FlowReader(fo).stream())
    return flows
