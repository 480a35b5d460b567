"""Events: what happened, fed by the driver (proxy/driver.py) into a sans-io layer.

Named in the past tense (mitmproxy's `proxy/events.py`, h11's events): the driver turns
socket callbacks and finished commands into these, and a layer's `handle_event(event)`
answers with commands (commands.py). Frozen and slotted: an event is a fact, cheap to
make, never changed on its way through a layer. Layer-specific events (a message an
addon injects into a TCP flow) live with their layer and subclass `Event`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastproxy.connection import Connection
    from fastproxy.proxy.commands import Command, Hook, OpenConnection


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of everything a layer is fed."""


@dataclass(frozen=True, slots=True)
class Start(Event):
    """The layer starts: the first event it gets, once, before any other."""


@dataclass(frozen=True, slots=True, repr=False)
class DataReceived(Event):
    """Bytes arrived on `connection` (several reads may be joined into one event)."""

    connection: Connection
    data: bytes

    def __repr__(self) -> str:
        return f"DataReceived({self.connection.id[:8]}, {self.data[:32]!r}{'...' if len(self.data) > 32 else ''})"


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The peer of `connection` will send nothing more.

    With `half_close` it sent a FIN and can still be written to (TCP half-close,
    RFC 9293 §3.6); otherwise the connection is gone, and `error` says why when it did
    not end cleanly (a reset, or lost without a FIN). A connection the layer closed
    itself (`CloseConnection`) gets no such event.
    """

    connection: Connection
    half_close: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CommandCompleted(Event):
    """Base of the answers to blocking commands; `command` is the command answered.

    A layer that emitted a blocking command handles no other event until its answer
    came (they are queued: sansio.py)."""

    command: Command


@dataclass(frozen=True, slots=True)
class OpenCompleted(CommandCompleted):
    """`OpenConnection` finished: connected when `error` is None, else why not."""

    command: OpenConnection
    error: str | None = None


@dataclass(frozen=True, slots=True)
class HookCompleted(CommandCompleted):
    """Every addon listening to `hook` ran (and may have changed its data)."""

    command: Hook

    @property
    def hook(self) -> Hook:
        """The hook that ran (the `command` this answers)."""
        return self.command


__all__ = [
    "CommandCompleted",
    "ConnectionClosed",
    "DataReceived",
    "Event",
    "HookCompleted",
    "OpenCompleted",
    "Start",
]
