"""A tiny playbook for sans-io layers, after mitmproxy's `test/mitmproxy/proxy/tutils.py`.

    assert (
        Playbook(layer)
        >> Start()
        << OpenConnection(server)
        >> reply()                      # answers the blocking command just emitted
        << Hook("tcp_start", flow)      # flow = Placeholder(TCPFlow): matches, captures
        >> reply()
    )

`>> event` feeds an event, `<< command` expects the next command the layer returned.
`bool(playbook)` runs it and raises AssertionError with both sequences when the layer's
commands differ from the expected ones (extra commands included). Playbooks extend:
`assert playbook >> more << expected` replays only what was added. No socket, no loop.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastproxy.proxy.commands import Command, Hook, OpenConnection
from fastproxy.proxy.events import Event, HookCompleted, OpenCompleted


class Placeholder:
    """Matches any value of `type` in an expected command, and keeps the first it matched
    (`placeholder()` returns it); later matches must be that same object."""

    def __init__(self, type: type = object) -> None:
        self.type = type
        self.value: Any = None
        self.bound = False

    def __call__(self) -> Any:
        assert self.bound, f"{self!r} matched nothing yet"
        return self.value

    def match(self, value: Any) -> bool:
        if self.bound:
            return value is self.value
        if not isinstance(value, self.type):
            return False
        self.value, self.bound = value, True
        return True

    def __repr__(self) -> str:
        return f"Placeholder({self.type.__name__}{'=' + repr(self.value) if self.bound else ''})"


class reply:
    """The answer to the blocking command the layer emitted last: `HookCompleted` for a
    `Hook`, `OpenCompleted(command, error)` for an `OpenConnection`. `side_effect(data)`
    runs first for a hook (an addon changing the flow)."""

    def __init__(self, error: str | None = None, side_effect: Any = None) -> None:
        self.error = error
        self.side_effect = side_effect

    def event_for(self, command: Command) -> Event:
        if isinstance(command, Hook):
            if self.side_effect is not None:
                self.side_effect(command.data)
            return HookCompleted(command)
        if isinstance(command, OpenConnection):
            return OpenCompleted(command, self.error)
        raise AssertionError(f"reply() to a command that is not blocking: {command!r}")


class Playbook:
    """Events fed to a layer and the commands expected back, checked in order."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.script: list[tuple[str, Any]] = []
        self.done = 0
        """How many entries of `script` were played already."""
        self.actual: list[Command] = []
        self.expected: list[Any] = []
        self.posted: list[Event] = []
        """Events the layer posted for itself (`post_event`: injected messages)."""
        layer.post_event = self.posted.append

    def __rshift__(self, event: Event | reply) -> Playbook:
        self.script.append((">>", event))
        return self

    def __lshift__(self, command: Command) -> Playbook:
        self.script.append(("<<", command))
        return self

    def __bool__(self) -> bool:
        for direction, item in self.script[self.done:]:
            if direction == "<<":
                self.expected.append(item)
                continue
            if isinstance(item, reply):
                blocking = [c for c in self.actual if c.blocking]
                assert blocking, "reply() with no blocking command before it"
                item = item.event_for(blocking[-1])
            self.actual.extend(self.layer.handle_event(item))
        self.done = len(self.script)
        if len(self.actual) != len(self.expected) or not all(
                matches(e, a) for e, a in zip(self.expected, self.actual)):
            raise AssertionError("commands differ:\n" + self._table())
        return True

    def _table(self) -> str:
        rows = []
        for i in range(max(len(self.actual), len(self.expected))):
            e = self.expected[i] if i < len(self.expected) else "-"
            a = self.actual[i] if i < len(self.actual) else "-"
            mark = "  " if e != "-" and a != "-" and matches(e, a) else "!!"
            rows.append(f"{mark} expected {e!r}\n   actual   {a!r}")
        return "\n".join(rows)


def matches(expected: Any, actual: Any) -> bool:
    """Equality that lets `Placeholder`s stand for values inside command dataclasses."""
    if isinstance(expected, Placeholder):
        return expected.match(actual)
    if dataclasses.is_dataclass(expected) and not isinstance(expected, type):
        return type(expected) is type(actual) and all(
            matches(getattr(expected, f.name), getattr(actual, f.name))
            for f in dataclasses.fields(expected))
    return expected == actual


def run_answering(layer: Any, events: list[Event], on_hook: Any = None) -> list[Command]:
    """Feed `events`, answering every blocking command at once (`on_hook(hook)` first,
    for hooks); the commands, in order. For property tests, where a playbook would be
    as long as the random input."""
    injected: list[Event] = []
    layer.post_event = injected.append
    out: list[Command] = []
    pending = list(events)
    while pending:
        commands = layer.handle_event(pending.pop(0))
        out.extend(commands)
        if commands and commands[-1].blocking:
            command = commands[-1]
            if isinstance(command, Hook) and on_hook is not None:
                on_hook(command)
            pending.insert(0, reply().event_for(command))
        pending.extend(injected)
        injected.clear()
    return out


__all__ = ["Placeholder", "Playbook", "matches", "reply", "run_answering"]
