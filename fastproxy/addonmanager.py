"""Loading addons and scripts, and calling their hooks.

The manager keeps, for every event in `hooks.HOOKS`, the tuple of bound callables that
listen to it (`manager.listeners.<event>`), recomputed whenever the addon chain or the
options change. An addon whose `listening` attribute is False (a recorder with no file,
a quiet console) is left out, so a loaded but idle addon costs nothing.
The proxy checks that tuple before it builds anything for an event, so an event nobody
listens to costs one attribute read.

A hook may be a plain function or a coroutine function; `trigger` awaits coroutines. An
exception in a hook is logged with its traceback and the flow goes on.

An addon may name a spec event by mitmproxy's current name (`hooks.ALIASES`,
``client_connected(client)`` for ``clientconnect(root_layer)``): its listener is wrapped
to get the alias's arguments, and the event still fires once. ``configure`` is called
with the arity the addon declares: ``configure(options, updated)`` (the spec) or
``configure(updated)`` (mitmproxy >= 4).
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any, Awaitable, Iterable

from fastproxy.hooks import ALIASES, HOOKS
from fastproxy.log import logger
from fastproxy.options import Options, OptionsError
from fastproxy.script import Script

HTTP_FLOW_EVENTS = ("requestheaders", "request", "responseheaders", "response", "error")


class Listeners:
    """One attribute per event: the tuple of callables listening to it. Also:

    ``http_flows``: whether an HTTP/1 request needs an `HTTPFlow`, i.e. some addon other
    than an exchange recorder listens to an HTTP event;
    ``record_exchange``: when it does not, the ``record_exchange`` methods of the addons
    that say ``records_exchanges = True`` (`fastproxy.io.capture`), else ().
    """

    def __init__(self) -> None:
        for name in HOOKS:
            setattr(self, name, ())
        self.http_flows = False
        self.record_exchange: tuple = ()


class Loader:
    """What an addon's `load(loader)` receives: a way to register its options."""

    def __init__(self, options: Options, manager: AddonManager | None = None) -> None:
        self._options = options
        self._manager = manager

    def add_option(self, name: str, typespec: Any, default: Any, help: str,
                   choices: Iterable[str] | None = None) -> None:
        """Register an option; mitmproxy's typing specs (``Optional[int]``,
        ``Sequence[str]``) are accepted."""
        self._options.add_option(name, _plain_type(typespec), default, help, choices)

    def add_command(self, path: str, func: Any) -> None:
        """Register `func` as the command `path`."""
        if self._manager is not None:
            self._manager.commands.add(path, func)


def _plain_type(typespec: Any) -> type:
    """``Optional[X]`` -> X, ``Sequence[str]`` / ``list[str]`` -> list."""
    origin = typing.get_origin(typespec)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(typespec) if a is not type(None)]
        return _plain_type(kinds[0]) if len(kinds) == 1 else str
    if origin is not None:
        import collections.abc
        if origin in (list, tuple, collections.abc.Sequence):
            return list
        return origin
    return typespec


class MasterHandle:
    """``ctx.master``: the process as addons see it (mitmproxy's Master, in part)."""

    def __init__(self, manager: AddonManager) -> None:
        self.addons = manager
        self.options = manager.options
        self.commands = manager.commands
        self.shutdown_callback: Any = None
        """Set by the running `fastproxy.master.Master`."""

    @property
    def event_loop(self) -> Any:
        import asyncio
        return asyncio.get_event_loop()

    def shutdown(self) -> None:
        """Stop the proxy (as SIGTERM does)."""
        if self.shutdown_callback is not None:
            self.shutdown_callback()


class AddonManager:
    """The chain of addons, in load order, and dispatch of events to them."""

    def __init__(self, options: Options) -> None:
        from fastproxy import ctx
        from fastproxy.command import CommandManager
        self.options = options
        self.chain: list[Any] = []
        self.listeners = Listeners()
        self.body_listeners: dict[str, tuple] = {"request": (), "response": ()}
        self.commands = CommandManager()
        _builtin_commands(self.commands)
        from fastproxy.addons import clientplayback
        clientplayback.register(self)
        self.master = MasterHandle(self)
        self.scripts: list[Any] = []
        """`fastproxy.script.Script` per -s script, reloaded when its file changes."""
        ctx.options, ctx.master = options, self.master

    # -- loading -----------------------------------------------------------------------

    def add(self, *addons: Any) -> None:
        """Add addons (and the `addons` they nest), calling `load` and `start` on each."""
        self.chain.extend(self.register(*addons))
        self._compute_listeners()

    def register(self, *addons: Any) -> list[Any]:
        """`load` and `start` each addon and the addons it nests; returns them, in order,
        for the caller to put in the chain. Their commands are registered."""
        members = []
        for addon in addons:
            for member in _flatten(addon):
                if hasattr(member, "load"):
                    self._call_safely(member.load, Loader(self.options, self))
                replacement = self._start(member)
                members.append(replacement)
                if replacement is not member and hasattr(replacement, "load"):
                    self._call_safely(replacement.load, Loader(self.options, self))
                self.commands.collect(replacement)
        return members

    def configure_hook(self, addon: Any) -> Any | None:
        """The addon's `configure`, called with the spec's (options, updated) whatever
        form it has (None if it has none)."""
        fn = getattr(addon, "configure", None)
        return _configure_adapter(fn) if callable(fn) else None

    def load_script(self, path: str) -> types.ModuleType:
        """Import a script file as a module and add it (or its `addons` list); the
        running proxy reloads it when the file changes (`fastproxy.script.Script`)."""
        script = Script(self, path)
        module = script.load()
        self.scripts.append(script)
        return module

    def get(self, name: str) -> Any | None:
        """The addon called `name` (its ``name`` attribute or lower-cased class name)."""
        return next((a for a in self.chain if _addon_name(a) == name.lower()), None)

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def _start(self, addon: Any) -> Any:
        start = getattr(addon, "start", None)
        if start is None or inspect.iscoroutinefunction(start):
            return addon
        result = self._call_safely(start)
        return addon if result is None else result

    def _compute_listeners(self) -> None:
        active = [addon for addon in self.chain if getattr(addon, "listening", True)]
        for name in HOOKS:
            setattr(self.listeners, name, _listeners_of(name, active))
        # configure, start and done reach every addon, idle or not
        for name in ("configure", "done", "start"):
            setattr(self.listeners, name, _listeners_of(name, self.chain))
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
        except OptionsError as e:  # an addon refusing an option value: one line
            logger.error("%s: %s", _describe(fn), e)
            return None
        except Exception:
            logger.exception("Addon error in %s", _describe(fn))
            return None


_ALIASES_OF: dict[str, tuple] = {}
for _alias in ALIASES.values():
    _ALIASES_OF[_alias.event] = (*_ALIASES_OF.get(_alias.event, ()), _alias)


def _listeners_of(event: str, addons: list[Any]) -> tuple:
    """The callables for `event`, addon by addon: the spec's name, then mitmproxy's."""
    found = []
    for addon in addons:
        fn = getattr(addon, event, None)
        if callable(fn):
            found.append(_configure_adapter(fn) if event == "configure" else fn)
        for alias in _ALIASES_OF.get(event, ()):
            fn = getattr(addon, alias.name, None)
            if callable(fn):
                found.append(fn if alias.adapt is None else _adapted(fn, alias.adapt))
    return tuple(found)


def _adapted(fn: Any, adapt: Any) -> Any:
    def call(*args: Any) -> Any:
        return fn(*adapt(*args))
    call.__qualname__ = getattr(fn, "__qualname__", repr(fn))
    if hasattr(fn, "__self__"):  # what _describe and the listener flags look at
        call.__self__ = fn.__self__  # type: ignore[attr-defined]
    return call


def _configure_adapter(fn: Any) -> Any:
    """``configure(updated)`` (mitmproxy >= 4) gets one argument, the spec's form two."""
    if _positional_arity(fn) == 1:
        return _adapted(fn, lambda options, updated: (updated,))
    return fn


def _positional_arity(fn: Any) -> int | None:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _addon_name(addon: Any) -> str:
    name = getattr(addon, "name", None)
    if isinstance(name, str):
        return name.lower()
    if isinstance(addon, types.ModuleType):
        return addon.__name__.lower()
    return type(addon).__name__.lower()


def _builtin_commands(commands: Any) -> None:
    """The proxy's own commands that mitmproxy's examples call."""
    def inject_websocket(flow: Any, to_client: bool, message: bytes | str,
                         is_text: bool = True) -> None:
        from fastproxy.websocket import inject
        inject(flow, to_client, message, is_text)

    def inject_tcp(flow: Any, to_client: bool, message: bytes) -> None:
        from fastproxy.tcp import inject
        inject(flow, to_client, message)

    commands.add("inject.websocket", inject_websocket)
    commands.add("inject.tcp", inject_tcp)


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


def _describe(fn: Any) -> str:
    owner = getattr(fn, "__self__", None)
    name = getattr(fn, "__qualname__", repr(fn))
    if isinstance(owner, types.ModuleType):
        return f"{owner.__file__}:{getattr(fn, '__name__', name)}"
    return name
