"""AddonManager.fire: plain hooks run at once with no coroutine; a coroutine hook makes
it return an awaitable that finishes the chain in order; a raising hook is logged."""

from __future__ import annotations

import asyncio
import logging

from fastproxy.addonmanager import AddonManager
from fastproxy.options import Options


class Recorder:
    def __init__(self, name: str, calls: list, mode: str = "sync") -> None:
        self.name, self.calls, self.mode = name, calls, mode

    def request(self, flow):
        if self.mode == "raise":
            raise RuntimeError(f"{self.name} broke")
        if self.mode == "async":
            return self._later(flow)
        self.calls.append((self.name, flow))
        return None

    async def _later(self, flow):
        await asyncio.sleep(0)
        self.calls.append((self.name, flow))


def manager(*addons) -> AddonManager:
    m = AddonManager(Options())
    m.add(*addons)
    return m


def test_plain_hooks_run_at_once_without_a_coroutine():
    calls: list = []
    m = manager(Recorder("a", calls), Recorder("b", calls))
    assert m.fire("request", "flow") is None
    assert calls == [("a", "flow"), ("b", "flow")]


def test_a_coroutine_hook_defers_the_rest_in_order():
    calls: list = []
    m = manager(Recorder("a", calls), Recorder("b", calls, "async"), Recorder("c", calls))
    pending = m.fire("request", "flow")
    assert pending is not None
    assert calls == [("a", "flow")]  # c waits for b
    asyncio.run(pending)
    assert calls == [("a", "flow"), ("b", "flow"), ("c", "flow")]


def test_a_raising_hook_is_logged_and_the_others_still_run(caplog):
    calls: list = []
    m = manager(Recorder("a", calls, "raise"), Recorder("b", calls))
    with caplog.at_level(logging.ERROR, logger="fastproxy"):
        assert m.fire("request", "flow") is None
    assert calls == [("b", "flow")]
    assert "a broke" in caplog.text and "Addon error in request" in caplog.text
