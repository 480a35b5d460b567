"""Scripts (``-s FILE``): loading, reloading on edit, and ``@concurrent`` for blocking
hooks (mitmproxy's ``script`` module)."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import inspect
import os
import sys
import types
import uuid
from pathlib import Path
from typing import Any, Callable


def concurrent(fn: Callable) -> Callable:
    """Run a blocking hook in a worker thread: only its own flow waits, not the proxy.

    (mitmproxy's decorator; a coroutine hook is the modern way.)
    """
    if inspect.iscoroutinefunction(fn):
        raise ValueError("@concurrent is for plain functions; a coroutine hook is already non-blocking")

    @functools.wraps(fn)
    async def wrapper(*args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
    return wrapper


__all__ = ["concurrent"]


def import_script(path: str) -> types.ModuleType:
    """Import a Python file as a fresh module (its directory importable for siblings)."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise FileNotFoundError(f"script not found: {path}")
    name = f"__fastproxy_script_{file.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(file.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(file.parent))
    return module


class ScriptError(ImportError):
    """A script could not be imported; the message is one line (file, line, error)."""


def _one_line(path: str, error: BaseException) -> str:
    import traceback
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if f.filename == str(Path(path).expanduser().resolve())]
    where = f" (line {frames[-1].lineno})" if frames else ""
    if isinstance(error, SyntaxError) and error.lineno:
        where = f" (line {error.lineno})"
    return f"cannot load script {path}{where}: {type(error).__name__}: {error}"


class Script:
    """One ``-s`` script: its module's addons in the chain, reloaded when the file changes.

    A reload fires ``done`` on the old addons, imports the file again, and gives the new
    addons ``load``, ``configure`` (every option) and, once the proxy runs, ``running``,
    as mitmproxy does. A script that fails to import logs one line and keeps the proxy
    running without it, until the next edit.
    """

    RELOAD_INTERVAL = 1.0
    """Seconds between two looks at the file's modification time (mitmproxy's: 1 s)."""

    def __init__(self, manager: Any, path: str) -> None:
        self.manager = manager
        self.path = path
        self.members: list[Any] = []
        self.stamp: tuple | None = None

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(Path(self.path).expanduser())
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def load(self) -> Any:
        """First load (at start): raises `ScriptError` (one line) if it cannot be imported."""
        from fastproxy.log import hold_records
        hold_records()  # what the script logs while loading is shown once the log is up
        self.stamp = self._stat()
        try:
            module = import_script(self.path)
        except FileNotFoundError:
            raise
        except BaseException as e:  # noqa: BLE001 - any error in the script's own code
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            raise ScriptError(_one_line(self.path, e)) from None
        self.members = self.manager.register(module)
        self.manager.chain.extend(self.members)
        self.manager._compute_listeners()
        return module

    def changed(self) -> bool:
        stamp = self._stat()
        if stamp is None or stamp == self.stamp:
            return False
        self.stamp = stamp
        return True

    async def reload(self, running: bool) -> None:
        """Replace the script's addons by those of its file as it is now."""
        from fastproxy.log import logger
        manager = self.manager
        old = self.members
        for addon in old:
            done = getattr(addon, "done", None)
            if callable(done):
                await _call(done)
        chain = manager.chain
        index = next((i for i, a in enumerate(chain) if any(a is o for o in old)), len(chain))
        chain[:] = [a for a in chain if not any(a is o for o in old)]
        self.members = []
        try:
            module = import_script(self.path)
        except BaseException as e:  # noqa: BLE001
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            logger.error("%s", _one_line(self.path, e))
            manager._compute_listeners()
            return
        self.members = manager.register(module)
        chain[index:index] = self.members
        manager._compute_listeners()
        logger.info("Reloaded script %s", self.path)
        updated = set(manager.options.keys())
        for addon in self.members:
            configure = manager.configure_hook(addon)
            if configure is not None:
                await _call(configure, manager.options, updated)
            running_hook = getattr(addon, "running", None)
            if running and callable(running_hook):
                await _call(running_hook)


async def _call(fn: Callable, *args: Any) -> None:
    from fastproxy.log import logger
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("Addon error in %s", getattr(fn, "__qualname__", fn))


async def watch(scripts: list[Script], is_running: Callable[[], bool]) -> None:
    """Reload each script whose file changed, until cancelled."""
    while True:
        await asyncio.sleep(Script.RELOAD_INTERVAL)
        for script in scripts:
            if script.changed():
                await script.reload(is_running())
