"""Commands: what a sans-io layer asks the driver (proxy/driver.py) to do.

Named as imperatives (mitmproxy's `proxy/commands.py`). A layer never touches a socket:
it returns these from `handle_event`, and the driver executes them in order. A
*blocking* command (`OpenConnection`, `Hook`) is answered by an event
(`OpenCompleted`, `HookCompleted`), and the layer handles nothing else until then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from fastproxy.connection import Connection


@dataclass(frozen=True, slots=True)
class Command:
    """Base class of everything a layer asks for."""

    blocking: ClassVar[bool] = False
    """Whether the layer waits for an answer (a `CommandCompleted` event)."""


@dataclass(frozen=True, slots=True, repr=False)
class SendData(Command):
    """Write `data` to `connection` (dropped if the connection is gone)."""

    connection: Connection
    data: bytes

    def __repr__(self) -> str:
        return f"SendData({self.connection.id[:8]}, {self.data[:32]!r}{'...' if len(self.data) > 32 else ''})"


@dataclass(frozen=True, slots=True)
class OpenConnection(Command):
    """Connect `connection` (a `Server` with its `address`); answered by `OpenCompleted`.

    The driver fills in the connection's fields (peername, sockname, timestamps, state).
    """

    blocking: ClassVar[bool] = True
    connection: Connection


@dataclass(frozen=True, slots=True)
class CloseConnection(Command):
    """Close `connection`; with `half_close`, only our sending half (a FIN after what is
    buffered), so that the peer can still answer."""

    connection: Connection
    half_close: bool = False


@dataclass(frozen=True, slots=True)
class Hook(Command):
    """Run the addons listening to event `name` with `data` (a flow, a connection);
    answered by `HookCompleted` once they all ran. A hook with no listener costs nothing:
    the driver answers it at once."""

    blocking: ClassVar[bool] = True
    name: str
    data: Any


@dataclass(frozen=True, slots=True)
class Splice(Command):
    """Relay what `src` sends to `dst` in the driver itself, from `data_received`, with no
    Python object per chunk (`_core.Relay`, back-pressure included); each chunk also goes
    to `tee.add` when a tee is given. The layer is told a side ended by `ConnectionClosed`.
    """

    src: Connection
    dst: Connection
    tee: Any = None


@dataclass(frozen=True, slots=True)
class Log(Command):
    """Log `message` at `level` ("debug", "info", "warning", "error")."""

    message: str
    level: str = "info"


__all__ = ["CloseConnection", "Command", "Hook", "Log", "OpenConnection", "SendData", "Splice"]
