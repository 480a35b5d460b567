"""The console: one line per flow, as mitmdump prints it (`flow_detail` for more).

The text comes from `fastproxy.addons.dumper_format`, which `fastproxy read` uses too, so a
recording lists exactly as the live proxy printed it.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from fastproxy.addons.dumper_format import format_flow


class Dumper:
    """Prints every finished HTTP flow; needs no bodies (unless -vv), so streaming stays fast."""

    needs_bodies = False

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.detail = 1
        self.listening = True

    def configure(self, options: Any, updated: set[str]) -> None:
        if "flow_detail" in updated:
            self.detail = options.flow_detail
            self.listening = self.detail > 0
            self.needs_bodies = self.detail >= 3  # -vv shows the start of the body

    def response(self, flow: Any) -> None:
        self._print(flow)

    def error(self, flow: Any) -> None:
        if flow.response is None:
            self._print(flow)

    def _print(self, flow: Any) -> None:
        print(format_flow(flow, self.detail), file=self.out, flush=True)
