"""Flow and Error: mitmproxy's state, kill, backup/revert, intercept/resume."""

import asyncio
import uuid

import pytest

from fastproxy.connection import Client, Server
from fastproxy.flow import FLOW_FORMAT_VERSION, Error, Flow


class DemoFlow(Flow):
    """A flow type with nothing of its own, to test the base class."""


def make_flow(live: bool = True) -> DemoFlow:
    client = Client(peername=("127.0.0.1", 50000), sockname=("127.0.0.1", 8080))
    return DemoFlow(client, Server(address=("example.com", 443)), live=live)


def test_error() -> None:
    e = Error("boom", 5.0)
    assert (str(e), repr(e), e.get_state()) == ("boom", "boom", {"msg": "boom", "timestamp": 5.0})
    assert Error.from_state(e.get_state()) == e and Error("boom", 6.0) != e
    assert Error.KILLED_MESSAGE == "Connection killed."
    assert abs(Error("now").timestamp - Error("later").timestamp) < 1


def test_flow_defaults() -> None:
    f = make_flow()
    assert f.type == "demo"
    assert str(uuid.UUID(f.id)) == f.id and uuid.UUID(f.id).version == 4
    assert (f.error, f.intercepted, f.marked, f.is_replay, f.metadata, f.comment) == (None, False, "", None, {}, "")
    assert f.live is True and f.timestamp_start == f.client_conn.timestamp_start
    assert make_flow().id != f.id


def test_flow_state_has_mitmproxys_keys() -> None:
    state = make_flow().get_state()
    assert set(state) == {"version", "type", "id", "error", "client_conn", "server_conn",
                          "intercepted", "is_replay", "marked", "metadata", "comment",
                          "timestamp_created", "backup"}
    assert state["version"] == FLOW_FORMAT_VERSION == 21
    assert state["type"] == "demo" and state["backup"] is None and state["error"] is None


def test_flow_state_round_trip() -> None:
    f = make_flow()
    f.error = Error("timeout", 3.0)
    f.marked, f.comment, f.is_replay, f.metadata = "x", "c", "request", {"a": {"b": 1}}
    state = f.get_state()
    loaded = Flow.from_state(f.get_state())
    assert type(loaded) is DemoFlow and loaded.get_state() == state
    assert loaded.error == Error("timeout", 3.0) and loaded.client_conn == f.client_conn
    f.metadata["a"]["b"] = 2
    assert state["metadata"] == {"a": {"b": 1}}


def test_set_state_updates_connections_in_place() -> None:
    f, other = make_flow(), make_flow()
    conn = other.client_conn
    other.set_state(f.get_state())
    assert other.client_conn is conn and conn.id == f.client_conn.id and other.id == f.id


def test_set_state_checks_version_type_and_keys() -> None:
    f = make_flow()
    for key, value in (("version", 20), ("type", "http"), ("surprise", 1)):
        state = f.get_state()
        state[key] = value
        with pytest.raises(ValueError):
            make_flow().set_state(state)
    with pytest.raises(ValueError, match="unknown flow type"):
        Flow.from_state({**f.get_state(), "type": "nope"})


def test_copy() -> None:
    f = make_flow()
    f.metadata["k"] = [1]
    c = f.copy()
    assert type(c) is DemoFlow and c.id != f.id and c.live is False
    c.metadata["k"].append(2)
    assert f.metadata == {"k": [1]}


def test_kill() -> None:
    f = make_flow()
    f.intercept()
    assert f.killable
    f.kill()
    assert f.error.msg == Error.KILLED_MESSAGE and not f.live and not f.intercepted
    assert not f.killable
    with pytest.raises(RuntimeError):
        f.kill()
    assert not make_flow(live=False).killable


def test_backup_modified_revert() -> None:
    f = make_flow()
    assert not f.modified()
    f.backup()
    assert not f.modified() and f.get_state()["backup"]["comment"] == ""
    f.comment = "edited"
    assert f.modified()
    f.revert()
    assert f.comment == "" and not f.modified() and f.get_state()["backup"] is None


def test_backup_survives_a_state_round_trip() -> None:
    f = make_flow()
    f.backup()
    f.comment = "edited"
    loaded = Flow.from_state(f.get_state())
    assert loaded.modified()
    loaded.revert()
    assert loaded.comment == ""


async def test_intercept_and_resume() -> None:
    f = make_flow()
    await asyncio.wait_for(f.wait_for_resume(), 1)  # not intercepted: returns at once
    f.intercept()
    waiter = asyncio.ensure_future(f.wait_for_resume())
    await asyncio.sleep(0)
    assert not waiter.done()
    f.resume()
    await asyncio.wait_for(waiter, 1)
    assert not f.intercepted
