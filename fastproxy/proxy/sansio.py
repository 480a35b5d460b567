"""The base of sans-io layers: events in, commands out, no I/O (mitmproxy's `Layer`).

Theory of operation: a layer writes `_handle(event)` as a generator that yields
commands. `handle_event(event)` runs it and returns the commands yielded. A blocking
command (`Hook`, `OpenConnection`) is the last one returned: the generator is kept,
paused at that `yield`, and resumed with the answer (`HookCompleted`, `OpenCompleted`)
as the value of the `yield` expression. Events that arrive meanwhile are queued and
handled, in order, once it finished. So a layer reads like the sequential code it
replaces (`reply = yield OpenConnection(server)`), yet never awaits.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Generator
from typing import Any

from fastproxy.proxy.commands import Command
from fastproxy.proxy.events import CommandCompleted, Event

CommandGenerator = Generator[Command, Any, None]


class StateMachine:
    """A sans-io layer: `handle_event(event) -> list[Command]`; subclasses write `_handle`."""

    post_event: Callable[[Event], None] | None = None
    """Set by the driver: queues an event for this layer from outside the event flow
    (an addon injecting a message). Tests set it to collect such events."""

    def __init__(self) -> None:
        self._paused: tuple[CommandGenerator, Command] | None = None
        self._queue: collections.deque[Event] = collections.deque()

    def handle_event(self, event: Event) -> list[Command]:
        """Handle one event; the commands to execute, in order."""
        out: list[Command] = []
        paused = self._paused
        if paused is None:
            self._run(self._handle(event), None, out)
        elif isinstance(event, CommandCompleted) and event.command is paused[1]:
            self._paused = None
            self._run(paused[0], event, out)
        else:
            self._queue.append(event)
            return out
        queue = self._queue
        while queue and self._paused is None:
            self._run(self._handle(queue.popleft()), None, out)
        return out

    def _run(self, gen: CommandGenerator, answer: Event | None, out: list[Command]) -> None:
        """Resume `gen` with `answer`; collect its commands up to a blocking one or its end."""
        try:
            command = gen.send(answer)
            while True:
                out.append(command)
                if command.blocking:
                    self._paused = (gen, command)
                    return
                command = next(gen)
        except StopIteration:
            pass

    def _handle(self, event: Event) -> CommandGenerator:
        raise NotImplementedError
        yield  # a generator


__all__ = ["CommandGenerator", "StateMachine"]
