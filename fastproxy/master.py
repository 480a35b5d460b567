"""One proxy process: options, addons and the server, from start to a clean stop.

`Master.run()` fires `configure` with every option, starts listening, fires `tick` while
anybody listens to it, and on SIGINT/SIGTERM stops accepting, closes connections and
fires `done`. `run_workers` forks N such processes onto one SO_REUSEPORT port.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import socket
import sys

from fastproxy.addonmanager import AddonManager
from fastproxy.log import AddonLogHandler, LogEntry, logger
from fastproxy.options import Options
from fastproxy.proxy.server import ProxyServer, listen_socket

TICK_INTERVAL = 0.1


class Master:
    """Runs the proxy in this process until it is told to stop."""

    def __init__(self, options: Options, addons: AddonManager) -> None:
        self.options = options
        self.addons = addons
        self.server: ProxyServer | None = None
        self.address: tuple[str, int] | None = None
        self._stop: asyncio.Event | None = None
        self.running = False
        self.commands = addons.commands
        addons.master.shutdown_callback = self.shutdown

    async def run(self, sock: socket.socket | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        log_handler = AddonLogHandler(self._deliver_log)
        root_logger = logging.getLogger()  # addons log to the root logger (or below it)
        root_logger.addHandler(log_handler)
        try:
            await self._configure_all()
            self.options.subscribe(self._options_changed)
            self.server = ProxyServer(self.options, self.addons)
            self.address = await self.server.start(sock)
            for listener in self.server.listeners:
                host, port = listener.address
                logger.info("%s listening at %s:%d (%s mode%s).", _description(listener.mode),
                            f"[{host}]" if ":" in host else host, port,
                            listener.mode.full_spec, _worker_note(self.options))
            self.running = True
            if self.addons.listeners.running:
                await self.addons.trigger("running")
            ticker = loop.create_task(self._tick()) if self.addons.listeners.tick else None
            watcher = None
            if self.addons.scripts:
                from fastproxy.script import watch
                watcher = loop.create_task(watch(self.addons.scripts, lambda: self.running))
            await self._stop.wait()
            for task in (ticker, watcher):
                if task is not None:
                    task.cancel()
            await self.server.stop()
            await self.addons.trigger("done")
        finally:
            root_logger.removeHandler(log_handler)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def shutdown(self) -> None:
        """Ask `run()` to stop (same as SIGTERM)."""
        if self._stop is not None:
            self._stop.set()

    async def _configure_all(self) -> None:
        for pending in self.addons.configure_all(self.options.keys()):
            await pending

    def _options_changed(self, updated: set[str]) -> None:
        for pending in self.addons.configure_all(updated):
            asyncio.ensure_future(pending)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_INTERVAL)
            await self.addons.trigger("tick")

    def _deliver_log(self, entry: LogEntry) -> None:
        for fn in self.addons.listeners.log:
            try:
                result = fn(entry)
                if inspect.isawaitable(result):
                    asyncio.ensure_future(result)
            except Exception as e:  # logging from here would recurse
                print(f"Addon error in log hook: {e!r}", file=sys.stderr)


def _description(mode) -> str:
    from fastproxy.mode_specs import ReverseMode
    return "Reverse proxy" if isinstance(mode, ReverseMode) else mode.description


def _worker_note(options: Options) -> str:
    return f", worker {options.worker_index + 1}/{options.workers}" if options.workers > 1 else ""


def run_workers(options: Options, serve_one) -> int:
    """Fork `options.workers` processes, each calling `serve_one(worker_index)`.

    The parent binds the port first (so `-p 0` gives every worker the same port), keeps
    no listening socket of its own, passes SIGINT/SIGTERM on, and waits for them all.
    """
    from fastproxy.proxy.server import parse_modes
    first = parse_modes(options.mode)[0]
    reserve = listen_socket(first.listen_host(options.listen_host),
                            first.listen_port(options.listen_port), reuse_port=True)
    port = reserve.getsockname()[1]
    reserve.close()
    options.update(listen_port=port)
    children = []
    for index in range(options.workers):
        pid = os.fork()
        if pid == 0:
            os._exit(serve_one(index))
        children.append(pid)

    def forward(signum, _frame) -> None:
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    status = 0
    for pid in children:
        _, code = os.waitpid(pid, 0)
        status = status or os.waitstatus_to_exitcode(code)
    return status
