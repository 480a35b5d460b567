"""mitmproxy's ``ctx``: the running proxy as seen from inside an addon.

``ctx.options`` are the proxy's options, ``ctx.master`` a handle on the process (its
``commands``, ``addons``, ``options``, ``shutdown()``), ``ctx.log`` the pre-9 logging API
(``ctx.log.info(...)``; records go to the standard `logging` module, as any addon's).
All three are set as soon as an `AddonManager` exists, so a script may use them at import.
"""

from __future__ import annotations

import logging
from typing import Any

from fastproxy.log import ALERT


class Log:
    """``ctx.log``: mitmproxy < 9's log calls, on the standard `logging` root logger."""

    def __init__(self) -> None:
        self._logger = logging.getLogger()

    def debug(self, txt: Any) -> None:
        self._logger.debug(txt)

    def info(self, txt: Any) -> None:
        self._logger.info(txt)

    def alert(self, txt: Any) -> None:
        self._logger.log(ALERT, txt)

    def warn(self, txt: Any) -> None:
        self._logger.warning(txt)

    warning = warn

    def error(self, txt: Any) -> None:
        self._logger.error(txt)

    def __call__(self, txt: Any, level: str = "info") -> None:
        getattr(self, level)(txt)


master: Any = None
"""The running process (`fastproxy.addonmanager.MasterHandle`)."""
options: Any = None
"""The proxy's `fastproxy.options.Options`."""
log: Log = Log()

__all__ = ["log", "master", "options"]
