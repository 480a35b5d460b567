"""Flow, the base of HTTPFlow, TCPFlow and WebSocketFlow, and Error (mitmproxy's API).

A flow is made for every request on the hot path, so the constructor only stores its
arguments, one uuid4 and a timestamp. `get_state()` is mitmproxy 11's flow state.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any, ClassVar

from fastproxy.connection import Client, Server
from fastproxy.ids import new_id
from fastproxy.io.flowstate import FLOW_FORMAT_VERSION
from fastproxy.serializable import Serializable, State


class Error(Serializable):
    """A failure outside the protocol: a killed flow, a timeout, a broken connection.

    An HTTP error status is a normal `Response`, not an Error.
    """

    __slots__ = ("msg", "timestamp")

    KILLED_MESSAGE: ClassVar[str] = "Connection killed."

    msg: str
    """What went wrong."""
    timestamp: float
    """Unix time of the failure."""

    def __init__(self, msg: str, timestamp: float | None = None) -> None:
        self.msg = msg
        self.timestamp = time.time() if timestamp is None else timestamp

    def get_state(self) -> State:
        return {"msg": self.msg, "timestamp": self.timestamp}

    def set_state(self, state: State) -> None:
        self.msg = state["msg"]
        self.timestamp = state["timestamp"]

    @classmethod
    def from_state(cls, state: State) -> Error:
        return cls(state["msg"], state["timestamp"])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Error):
            return NotImplemented
        return (self.msg, self.timestamp) == (other.msg, other.timestamp)

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return self.msg

    def __repr__(self) -> str:
        return self.msg


class Flow(Serializable):
    """A collection of objects for one transaction, e.g. a request and its response.

    Subclasses set `type`; `Flow.from_state` picks the subclass by the state's "type".
    """

    __slots__ = ("id", "client_conn", "server_conn", "live", "timestamp_created", "error",
                 "intercepted", "marked", "is_replay", "metadata", "comment",
                 "_backup", "_resume_event")

    _types: ClassVar[dict[str, type[Flow]]] = {}
    type: ClassVar[str] = "flow"
    """The flow type: "http", "tcp", "websocket", ..."""

    id: str
    """A unique uuid4 string."""
    client_conn: Client
    """The client that connected to the proxy."""
    server_conn: Server
    """The server the proxy connected to, or will; unconnected if the flow was answered locally."""
    live: bool
    """True while the flow belongs to an active connection; False once done or loaded."""
    timestamp_created: float
    """Unix time the flow was created; unlike timestamp_start, kept by a replay."""
    error: Error | None
    """A connection or protocol error affecting this flow."""
    intercepted: bool
    """True while the flow is paused, waiting for `resume()`."""
    marked: str
    """A non-empty string marks the flow: one character or an emoji name like ":grapes:"."""
    is_replay: str | None
    """"request" if the proxy replayed the request, "response" if the response was replayed."""
    metadata: dict[str, Any]
    """Free-form data addons attach to the flow; recorded with it."""
    comment: str
    """A user's note on the flow."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type" not in cls.__dict__:
            cls.type = cls.__name__.removesuffix("Flow").lower()
        Flow._types[cls.type] = cls

    def __init__(self, client_conn: Client, server_conn: Server, live: bool = False) -> None:
        self.id = new_id()
        self.client_conn = client_conn
        self.server_conn = server_conn
        self.live = live
        self.timestamp_created = time.time()
        self.error = None
        self.intercepted = False
        self.marked = ""
        self.is_replay = None
        self.metadata = {}
        self.comment = ""
        self._backup: State | None = None
        self._resume_event: asyncio.Event | None = None

    def get_state(self) -> State:
        state = {
            "version": FLOW_FORMAT_VERSION,
            "type": self.type,
            "id": self.id,
            "error": None if self.error is None else self.error.get_state(),
            "client_conn": self.client_conn.get_state(),
            # None before the request went upstream: an unconnected server, as mitmproxy has
            "server_conn": (self.server_conn or Server(address=None)).get_state(),
            "intercepted": self.intercepted,
            "is_replay": self.is_replay,
            "marked": self.marked,
            # Copied so that the state does not change with the flow; empty is the norm.
            "metadata": copy.deepcopy(self.metadata) if self.metadata else {},
            "comment": self.comment,
            "timestamp_created": self.timestamp_created,
        }
        state["backup"] = None if self._backup is None else copy.deepcopy(self._backup)
        return state

    def set_state(self, state: State) -> None:
        """Load `state` (consumed) into this flow; connections are updated in place."""
        if state.pop("version", None) != FLOW_FORMAT_VERSION:
            raise ValueError(f"flow state is not version {FLOW_FORMAT_VERSION}")
        if state.pop("type", None) != self.type:
            raise ValueError(f"flow state is not of type {self.type!r}")
        self.id = state.pop("id")
        error = state.pop("error")
        self.error = None if error is None else Error.from_state(error)
        self.client_conn = _load(self.client_conn, Client, state.pop("client_conn"))
        self.server_conn = _load(self.server_conn, Server, state.pop("server_conn"))
        self.intercepted = state.pop("intercepted")
        self.is_replay = state.pop("is_replay")
        self.marked = state.pop("marked")
        self.metadata = state.pop("metadata")
        self.comment = state.pop("comment")
        self.timestamp_created = state.pop("timestamp_created")
        self._backup = state.pop("backup", None)
        if state:
            raise ValueError(f"unknown keys in flow state: {sorted(state)}")

    @classmethod
    def from_state(cls, state: State) -> Flow:
        """A flow of the class the state's "type" names."""
        flow_cls = Flow._types.get(state.get("type"))
        if flow_cls is None:
            raise ValueError(f"unknown flow type {state.get('type')!r}")
        flow = flow_cls(None, None)  # type: ignore[arg-type]  # set_state loads both
        flow.set_state(state)
        return flow

    def copy(self) -> Flow:
        """A copy with a new id, not live."""
        flow = super().copy()
        flow.live = False
        return flow

    @property
    def timestamp_start(self) -> float:
        """*Read-only:* start time of the flow (of the client connection here)."""
        return self.client_conn.timestamp_start

    def _unbacked_state(self) -> State:
        state = self.get_state()
        del state["backup"]
        return state

    def backup(self, force: bool = False) -> None:
        """Save the current state, for `revert()` (unless a backup exists)."""
        if self._backup is None or force:
            self._backup = self._unbacked_state()

    def modified(self) -> bool:
        """True if the flow changed since `backup()`."""
        return self._backup is not None and self._backup != self._unbacked_state()

    def revert(self) -> None:
        """Restore the state saved by `backup()`."""
        if self._backup is not None:
            backup, self._backup = self._backup, None
            self.set_state(backup)

    @property
    def killable(self) -> bool:
        """*Read-only:* True if the flow is live and not already killed."""
        return self.live and not (self.error is not None and self.error.msg == Error.KILLED_MESSAGE)

    def kill(self) -> None:
        """Kill the flow: what is in transit is not forwarded. RuntimeError if not killable."""
        if not self.killable:
            raise RuntimeError("Flow is not killable.")
        self.error = Error(Error.KILLED_MESSAGE)
        self.intercepted = False
        self.live = False

    def intercept(self) -> None:
        """Pause the flow until `resume()`."""
        if self.intercepted:
            return
        self.intercepted = True
        if self._resume_event is not None:
            self._resume_event.clear()

    async def wait_for_resume(self) -> None:
        """Wait until the flow is resumed (at once if it is not intercepted)."""
        if not self.intercepted:
            return
        if self._resume_event is None:
            self._resume_event = asyncio.Event()
        await self._resume_event.wait()

    def resume(self) -> None:
        """Continue a flow paused by `intercept()`."""
        if not self.intercepted:
            return
        self.intercepted = False
        if self._resume_event is not None:
            self._resume_event.set()


def _load(conn: Any, cls: type[Client] | type[Server], state: State) -> Any:
    """Update `conn` in place (flows may share it), or make one if there is none."""
    if conn is None:
        return cls.from_state(state)
    conn.set_state(state)
    return conn


__all__ = ["Error", "FLOW_FORMAT_VERSION", "Flow"]
