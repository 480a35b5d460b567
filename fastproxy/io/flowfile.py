"""mitmproxy's flow file format: one tnetstring-encoded state dict per flow, back to back.

Every state dict carries ``"version"``: the flow format version. mitmproxy 11 writes 21
(`fastproxy.flow.FLOW_FORMAT_VERSION`), and so do we; version 19 and 20 files (mitmproxy 9 and 10) are upgraded on reading, as mitmproxy's
``io.compat`` does. Other versions are refused with a warning.

A file cut short by ``kill -9`` or a full disk ends in a torn record. `FlowReader` yields
every complete flow before it and then stops with a `FlowFileWarning`; it never raises on
bad data. `valid_length` finds where the complete records end, so that appending can start
from there instead of after the torn bytes.
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Iterator
from typing import Any, BinaryIO

import fastproxy.http  # noqa: F401  (registers HTTPFlow with Flow.from_state)
import fastproxy.tcp  # noqa: F401  (registers TCPFlow)
from fastproxy.flow import FLOW_FORMAT_VERSION, Flow
from fastproxy.io import tnetstring


class FlowFileWarning(UserWarning):
    """A flow file could not be read to its end (torn tail, garbage, unknown version)."""


class FlowWriter:
    """Writes flows to a binary file object, one tnetstring per flow."""

    def __init__(self, fo: BinaryIO) -> None:
        self.fo = fo

    def add(self, flow: Flow) -> None:
        """Write ``flow``."""
        self.add_state(flow.get_state())

    def add_state(self, state: dict) -> None:
        """Write a flow's state dict as it is."""
        self.fo.write(tnetstring.dumps(state))


class FlowReader:
    """Reads flows from a binary file object.

    After `stream` or `states` is exhausted, ``error`` is ``None`` if the file was read to
    its clean end, or says why reading stopped early (also issued as a `FlowFileWarning`);
    ``skipped`` says which records `stream` could not turn into flows, and why.
    """

    def __init__(self, fo: BinaryIO) -> None:
        self.fo = fo
        self.error: str | None = None
        self.skipped: list[str] = []

    def stream(self) -> Iterator[Flow]:
        """Yield the flows in the file; a record that can't be restored is skipped, warned."""
        for state in self.states():
            try:
                flow = Flow.from_state(state)
            except Exception as e:  # e.g. a flow type fastproxy does not know (yet)
                why = f"skipped flow {state.get('id')!r}: {e}"
                self.skipped.append(why)
                warnings.warn(why, FlowFileWarning, stacklevel=2)
                continue
            yield flow

    def states(self) -> Iterator[dict]:
        """Yield each flow's state dict, upgraded to `FLOW_FORMAT_VERSION`."""
        while True:
            offset = self.fo.tell() if self.fo.seekable() else None
            try:
                record = tnetstring.read_record(self.fo)
                if record is None:
                    return
                state = tnetstring.loads(record)
                yield migrate(state)
            except ValueError as e:
                where = f" at byte {offset}" if offset is not None else ""
                self._stop(f"flow file ends in an incomplete or invalid record{where}: {e}")
                return

    def _stop(self, why: str) -> None:
        self.error = why
        warnings.warn(why, FlowFileWarning, stacklevel=3)


def migrate(state: Any) -> dict:
    """Upgrade a flow state dict from an older format version; ``ValueError`` if we can't."""
    if not isinstance(state, dict):
        raise ValueError(f"a flow record must be a dict, not {type(state).__name__}")
    version = state.get("version")
    while version != FLOW_FORMAT_VERSION:
        upgrade = _UPGRADES.get(version) if isinstance(version, int) else None
        if upgrade is None:
            raise ValueError(
                f"flow format version {version!r} is not supported "
                f"(fastproxy reads {min(_UPGRADES)} to {FLOW_FORMAT_VERSION})"
            )
        upgrade(state)
        version = state["version"] = version + 1
    return state


def _upgrade_19_to_20(state: dict) -> None:
    # mitmproxy io/compat.py convert_19_20: connection state is no longer saved.
    for conn in ("client_conn", "server_conn"):
        if state.get(conn) is not None:
            state[conn].pop("state", None)


def _upgrade_20_to_21(state: dict) -> None:
    # mitmproxy io/compat.py convert_20_21: "QUIC" became "QUICv1".
    for conn in ("client_conn", "server_conn"):
        if (state.get(conn) or {}).get("tls_version") == "QUIC":
            state[conn]["tls_version"] = "QUICv1"


_UPGRADES = {19: _upgrade_19_to_20, 20: _upgrade_20_to_21}


def valid_length(fo: BinaryIO) -> int:
    """The length of the prefix of ``fo`` made of complete top-level records.

    Walks the records by their length prefixes, seeking over their contents. ``fo`` must
    be seekable; its position afterwards is unspecified.
    """
    fo.seek(0)
    good = 0
    while True:
        try:
            if not tnetstring.skip_record(fo):
                return good
        except ValueError:
            return good
        good = fo.tell()


def recording_paths(path: str) -> list[str]:
    """The files a recording to ``path`` consists of.

    A single process writes ``path`` itself; ``--workers N`` writes one file per worker,
    ``path.w0`` ... ``path.w{N-1}`` (see `fastproxy.addons.save.worker_path`). If ``path``
    does not exist but worker files do, those are returned in worker order.
    """
    if os.path.exists(path):
        return [path]
    workers = glob.glob(glob.escape(path) + ".w[0-9]*")
    numbered = [p for p in workers if p[len(path) + 2 :].isdigit()]
    return sorted(numbered, key=lambda p: int(p[len(path) + 2 :])) or [path]
