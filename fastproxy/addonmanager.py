"""Loading addons and scripts, and calling their hooks.

The manager keeps, for every event in `hooks.HOOKS`, the tuple of bound callables that
listen to it (`manager.listeners.<event>`), recomputed whenever the addon chain or the
options change. An addon whose `listening` attribute is False (a recorder with no file,
a quiet console) is left out, so a loaded but idle addon costs nothing.
The proxy checks that tuple before it builds anything for an event, so an event nobody
listens to costs one attribute read.

A hook may be a plain function or a coroutine function; `trigger` awaits coroutines. An
exception in a hook is logged with its traceback and the flow goes on.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import types
import uuid
from pathlib import Path
from typing import Any, Awaitable, Iterable

from fastproxy.hooks import HOOKS
from fastproxy.log import logger
from fastproxy.options import Options


HTTP_FLOW_EVENTS = ("requestheaders", "request", "responseheaders", "response", "error")


class Listeners:
    """One attribute per event: the tuple of callables listening to it. Also:

    ``http_flows``: whether an HTTP/1 request needs an `HTTPFlow`, i.e. some addon other
    than an exchange recorder listens to an HTTP event;
    ``record_exchange``: when it does not, the ``record_exchange`` methods of the addons
    that say ``records_exchanges = True`` (`fastproxy.proxy.capture`), else ().
    """

    def __init__(self) -> None:
        for name in HOOKS:
            setattr(self, name, ())
        self.http_flows = False
        self.record_exchange: tuple = ()


class Loader:
    """What an addon's `load(loader)` receives: a way to register its options."""

    def __init__(self, options: Options) -> None:
        self._options = options

    def add_option(self, name: str, typespec: type, default: Any, help: str,
                   choices: Iterable[str] | None = None) -> None:
        self._options.add_option(name, typespec, default, help, choices)


class AddonManager:
    """The chain of addons, in load order, and dispatch of events to them."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.chain: list[Any] = []
        self.listeners = Listeners()
        self.body_listeners: dict[str, tuple] = {"request": (), "response": ()}

    # -- loading -----------------------------------------------------------------------

    def add(self, *addons: Any) -> None:
        """Add addons (and the `addons` they nest), calling `load` and `start` on each."""
        for addon in addons:
            for member in _flatten(addon):
                if hasattr(member, "load"):
                    self._call_safely(member.load, Loader(self.options))
                replacement = self._start(member)
                self.chain.append(replacement)
                if replacement is not member and hasattr(replacement, "load"):
                    self._call_safely(replacement.load, Loader(self.options))
        self._compute_listeners()

    def load_script(self, path: str) -> types.ModuleType:
        """Import a script file as a module and add it (or its `addons` list)."""
        module = import_script(path)
        self.add(module)
        return module

    def _start(self, addon: Any) -> Any:
        start = getattr(addon, "start", None)
        if start is None or inspect.iscoroutinefunction(start):
            return addon
        result = self._call_safely(start)
        return addon if result is None else result

    def _compute_listeners(self) -> None:
        active = [addon for addon in self.chain if getattr(addon, "listening", True)]
        for name in HOOKS:
            setattr(self.listeners, name, tuple(
                fn for fn in (getattr(addon, name, None) for addon in active)
                if callable(fn)
            ))
        # configure, start and done reach every addon, idle or not
        for name in ("configure", "done", "start"):
            setattr(self.listeners, name, tuple(
                fn for fn in (getattr(addon, name, None) for addon in self.chain)
                if callable(fn)
            ))
        self._compute_recording(active)
        for name in self.body_listeners:
            self.body_listeners[name] = tuple(
                fn for fn in getattr(self.listeners, name)
                if getattr(getattr(fn, "__self__", fn), "needs_bodies", True)
            )

    def _compute_recording(self, active: list[Any]) -> None:
        """An addon with ``records_exchanges`` records HTTP/1 exchanges without flows,
        unless another addon needs flows anyway (it then records those, as any addon)."""
        listeners = self.listeners
        listeners.http_flows = any(
            not getattr(getattr(fn, "__self__", None), "records_exchanges", False)
            for name in HTTP_FLOW_EVENTS for fn in getattr(listeners, name))
        listeners.record_exchange = () if listeners.http_flows else tuple(
            addon.record_exchange for addon in active
            if getattr(addon, "records_exchanges", False) is True)

    # -- dispatch ----------------------------------------------------------------------

    async def trigger(self, name: str, *args: Any) -> None:
        """Call every listener of `name` in order, awaiting coroutines."""
        await self._run(name, getattr(self.listeners, name), args)

    def fire(self, name: str, *args: Any) -> Awaitable[None] | None:
        """`trigger` for the per-request hot path: calls plain-function listeners at once
        and returns None, so no coroutine is made; once a listener returns a coroutine,
        returns an awaitable that finishes it and the remaining listeners in order."""
        listeners = getattr(self.listeners, name)
        for i, fn in enumerate(listeners):
            try:
                result = fn(*args)
            except Exception:
                logger.exception("Addon error in %s hook %s", name, _describe(fn))
                continue
            if result is not None and inspect.isawaitable(result):
                return self._resume(name, fn, result, listeners[i + 1:], args)
        return None

    async def _resume(self, name: str, fn, pending: Awaitable, rest: tuple,
                      args: tuple) -> None:
        try:
            await pending
        except Exception:
            logger.exception("Addon error in %s hook %s", name, _describe(fn))
        await self._run(name, rest, args)

    async def _run(self, name: str, listeners: tuple, args: tuple) -> None:
        for fn in listeners:
            try:
                result = fn(*args)
                if result is not None and inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("Addon error in %s hook %s", name, _describe(fn))

    async def trigger_returning(self, name: str, *args: Any) -> Any:
        """Like `trigger`, but returns the last non-None value a listener returned."""
        chosen = None
        for fn in getattr(self.listeners, name):
            try:
                result = fn(*args)
                if inspect.isawaitable(result):
                    result = await result
                if result is not None:
                    chosen = result
            except Exception:
                logger.exception("Addon error in %s hook %s", name, _describe(fn))
        return chosen

    def trigger_sync(self, name: str, *args: Any) -> list[Any]:
        """Call plain-function listeners now; return the coroutines for the caller to run."""
        pending = []
        for fn in getattr(self.listeners, name):
            result = self._call_safely(fn, *args)
            if inspect.isawaitable(result):
                pending.append(result)
        return pending

    def configure_all(self, updated: set[str]) -> list[Any]:
        """Fire `configure(options, updated)`; returns coroutines still to await.

        Addons may become idle or active with the new options: listeners are recomputed.
        """
        pending = self.trigger_sync("configure", self.options, updated)
        self._compute_listeners()
        return pending

    def _call_safely(self, fn, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:
            logger.exception("Addon error in %s", _describe(fn))
            return None


def _flatten(addon: Any) -> list[Any]:
    """An addon and, depth first after it, the addons it lists in `addons`."""
    nested = getattr(addon, "addons", None)
    if isinstance(addon, types.ModuleType) and nested is not None:
        members = []  # a script with `addons = [...]` is those addons, not itself
    else:
        members = [addon]
    for child in nested or ():
        members.extend(_flatten(child))
    return members


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


def _describe(fn: Any) -> str:
    owner = getattr(fn, "__self__", None)
    name = getattr(fn, "__qualname__", repr(fn))
    if isinstance(owner, types.ModuleType):
        return f"{owner.__file__}:{getattr(fn, '__name__', name)}"
    return name
