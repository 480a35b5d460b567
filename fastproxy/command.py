"""Commands: named functions addons offer (mitmproxy's ``command`` module).

``@command.command("myaddon.inc")`` marks a method; adding the addon registers it with
``ctx.master.commands``, where ``commands.call("myaddon.inc", *args)`` or
``commands.execute("myaddon.inc arg")`` runs it. The proxy's own commands
(``inject.websocket``, ``inject.tcp``, ``replay.client``) are registered the same way.
"""

from __future__ import annotations

import functools
import inspect
import shlex
from typing import Any, Callable

from fastproxy.exceptions import CommandError


def command(name: str | None = None) -> Callable[[Callable], Callable]:
    """Mark a function or method as the command `name` (default: its own name)."""
    def decorator(function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)
        wrapper.command_name = name or function.__name__  # type: ignore[attr-defined]
        return wrapper
    return decorator


def argument(name: str, type: Any) -> Callable[[Callable], Callable]:
    """Declare a parameter's type for the command line (kept as an annotation here)."""
    def decorator(function: Callable) -> Callable:
        function.__annotations__[name] = type
        return function
    return decorator


class CommandManager:
    """Every registered command by name."""

    def __init__(self) -> None:
        self.commands: dict[str, Callable] = {}

    def add(self, name: str, function: Callable) -> None:
        self.commands[name] = function

    def collect(self, addon: Any) -> None:
        """Register the ``@command``-marked functions of `addon`."""
        for attr in dir(addon):
            if attr.startswith("__"):
                continue
            try:
                value = getattr(addon, attr)
            except Exception:
                continue
            name = getattr(value, "command_name", None)
            if isinstance(name, str) and callable(value):
                self.add(name, value)

    def call(self, name: str, *args: Any) -> Any:
        """Run command `name` with Python arguments."""
        try:
            function = self.commands[name]
        except KeyError:
            raise CommandError(f"Unknown command: {name}") from None
        return function(*args)

    def call_strings(self, name: str, args: list[str]) -> Any:
        """Run command `name` with string arguments (converted by annotation: int, bool)."""
        function = self.commands.get(name)
        if function is None:
            raise CommandError(f"Unknown command: {name}")
        params = list(inspect.signature(function).parameters.values())
        converted = [_convert(p.annotation, a) for p, a in zip(params, args)]
        return function(*converted, *args[len(params):])

    def execute(self, cmdstr: str) -> Any:
        """Run a command line, e.g. ``"myaddon.inc"`` or ``"myaddon.add 3"``."""
        parts = shlex.split(cmdstr)
        if not parts:
            raise CommandError("Empty command")
        return self.call_strings(parts[0], parts[1:])

    def __contains__(self, name: str) -> bool:
        return name in self.commands


def _convert(annotation: Any, value: str) -> Any:
    if annotation in (int, "int"):
        return int(value)
    if annotation in (float, "float"):
        return float(value)
    if annotation in (bool, "bool"):
        return value.lower() in ("true", "1", "yes")
    return value


__all__ = ["CommandManager", "argument", "command"]
