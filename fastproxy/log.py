"""Log entries: Python logging for the proxy's own code, the `log` event for addons.

Everything fastproxy logs goes through the standard `logging` module under the
"fastproxy" logger; addons log with `logging` too (mitmproxy >= 9), or `ctx.log`. Both
handlers sit on the *root* logger, as mitmproxy's do, so an addon's ``logging.info()``
is shown and a module-level ``logging.warning()`` finds a handler (it would otherwise
call `logging.basicConfig`, print ``WARNING:root:`` and let every record through).
`AddonLogHandler` turns each record into a `LogEntry` for the addons' `log(entry)` /
`add_log(entry)` hook; `setup_termlog` prints to stderr at `termlog_verbosity`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Callable

logger = logging.getLogger("fastproxy")

ALERT = logging.INFO + 1
"""mitmproxy's level for messages meant for the user's eyes (``logging.log(ALERT, ...)``)."""
logging.addLevelName(ALERT, "ALERT")

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "alert": ALERT,
          "warn": logging.WARNING, "error": logging.ERROR}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", ALERT: "alert",
          logging.WARNING: "warn", logging.ERROR: "error", logging.CRITICAL: "error"}

QUIET_LIBRARIES = ("hpack", "h2", "wsproto", "asyncio", "httpx", "httpcore", "urllib3")
"""Libraries whose debug records would drown the proxy's at -vv: shown from WARNING."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """What the `log` event receives."""

    msg: str
    """The log text."""
    level: str
    """"debug", "info", "warn" or "error"."""


def level_name(levelno: int) -> str:
    """The addon-facing name of a logging level."""
    name = _NAMES.get(levelno)
    if name is None:
        name = next((_NAMES[n] for n in sorted(_NAMES, reverse=True) if levelno >= n), "debug")
    return name


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


class TermLogHandler(logging.StreamHandler):
    """The terminal log: fastproxy's records and the addons', at `termlog_verbosity`."""

    def __init__(self, level: str, stream=None) -> None:
        super().__init__(stream or sys.stderr)
        self.setLevel(LEVELS[level])
        self.setFormatter(logging.Formatter("%(message)s"))


class _EarlyRecords(logging.Handler):
    """Keeps what addons log while scripts load (``load``, import time), before the
    terminal log exists: `setup_termlog` prints them at its verbosity."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) < 10000:
            self.records.append(record)


def hold_records() -> None:
    """Keep log records from now until `setup_termlog` (called before scripts load)."""
    root = logging.getLogger()
    if not any(isinstance(h, (_EarlyRecords, TermLogHandler)) for h in root.handlers):
        root.addHandler(_EarlyRecords())
        root.setLevel(logging.DEBUG)


def setup_termlog(level: str, stream=None) -> logging.Handler:
    """Print the log (fastproxy's and every addon's) to stderr from `level` up, through
    the root logger; returns the handler. Replaces an earlier one (a reload, a test)."""
    root = logging.getLogger()
    early = []
    for old in [h for h in root.handlers if isinstance(h, (TermLogHandler, _EarlyRecords))]:
        root.removeHandler(old)
        early += getattr(old, "records", [])
    handler = TermLogHandler(level, stream)
    for record in early:
        if record.levelno >= handler.level:
            handler.handle(record)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logger.setLevel(logging.DEBUG)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler
