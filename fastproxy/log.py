"""Log entries: Python logging for the proxy's own code, the `log` event for addons.

Everything fastproxy logs goes through the standard `logging` module under the
"fastproxy" logger. `AddonLogHandler` turns each record into a `LogEntry` and hands it
to the addons' `log(entry)` hook; `TermLog` prints to stderr at the chosen verbosity.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Callable

logger = logging.getLogger("fastproxy")

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
          logging.ERROR: "error", logging.CRITICAL: "error"}


@dataclass(frozen=True, slots=True)
class LogEntry:
    """What the `log` event receives."""

    msg: str
    """The log text."""
    level: str
    """"debug", "info", "warn" or "error"."""


def level_name(levelno: int) -> str:
    """The addon-facing name of a logging level."""
    return _NAMES.get(levelno, "info")


class AddonLogHandler(logging.Handler):
    """Sends every log record to the addons' `log` hook."""

    def __init__(self, deliver: Callable[[LogEntry], None]) -> None:
        super().__init__(logging.DEBUG)
        self._deliver = deliver
        self._active = False

    def emit(self, record: logging.LogRecord) -> None:
        if self._active:  # an addon logging from its `log` hook must not recurse
            return
        self._active = True
        try:
            self._deliver(LogEntry(self.format(record), level_name(record.levelno)))
        finally:
            self._active = False


def setup_termlog(level: str, stream=None) -> logging.Handler:
    """Print fastproxy's log to stderr from `level` up; returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setLevel(LEVELS[level])
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return handler
