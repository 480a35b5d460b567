import ast
import dataclasses
import inspect
import time
import uuid

import pytest

from fastproxy import connection
from fastproxy.certs import Cert
from fastproxy.connection import Client, Connection, ConnectionState, Server
from fastproxy.net.server_spec import ServerSpec
from fastproxy.mode_specs import ProxyMode, RegularMode
from tests.test_certs import make_cert

# The keys mitmproxy 11 (flow format 21) writes for client_conn and server_conn.
COMMON_KEYS = {
    "id", "peername", "sockname", "transport_protocol", "error", "tls", "certificate_list",
    "alpn", "alpn_offers", "cipher", "cipher_list", "tls_version", "sni",
    "timestamp_start", "timestamp_end", "timestamp_tls_setup",
}
CLIENT_KEYS = COMMON_KEYS | {"mitmcert", "proxy_mode"}
SERVER_KEYS = COMMON_KEYS | {"address", "timestamp_tcp_setup", "via"}


@pytest.fixture(scope="module")
def certs() -> list[Cert]:
    return [Cert(make_cert(cn="leaf.example")), Cert(make_cert(cn="intermediate.example"))]


def new_client(**kwargs) -> Client:
    return Client(peername=("127.0.0.1", 52000), sockname=("127.0.0.1", 8080), **kwargs)


def full_client(certs: list[Cert]) -> Client:
    return new_client(
        state=ConnectionState.OPEN,
        transport_protocol="tcp",
        error="boom",
        tls=True,
        certificate_list=certs,
        alpn=b"h2",
        alpn_offers=[b"h2", b"http/1.1"],
        cipher="TLS_AES_128_GCM_SHA256",
        cipher_list=["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"],
        tls_version="TLSv1.3",
        sni="example.com",
        timestamp_start=1.5,
        timestamp_end=3.0,
        timestamp_tls_setup=2.0,
        mitmcert=certs[0],
        proxy_mode=ProxyMode.parse("reverse:https://example.com@8443"),
    )


def full_server(certs: list[Cert]) -> Server:
    return Server(
        address=("example.com", 443),
        peername=("2001:db8::1", 443, 0, 0),
        sockname=("::1", 51000, 0, 0),
        transport_protocol="udp",
        tls=True,
        certificate_list=certs,
        alpn=b"http/1.1",
        alpn_offers=[b"http/1.1"],
        cipher="ECDHE-RSA-AES128-GCM-SHA256",
        tls_version="TLSv1.2",
        sni="example.com",
        timestamp_start=1.0,
        timestamp_tcp_setup=1.25,
        timestamp_tls_setup=1.5,
        timestamp_end=9.0,
        via=ServerSpec.parse("http://proxy.local:3128"),
    )


# Module and types


def test_exports():
    assert connection.__all__ == ["Connection", "Client", "Server", "ConnectionState"]


def test_connection_state_flags():
    assert ConnectionState.CLOSED.value == 0
    assert ConnectionState.CAN_READ.value == 1
    assert ConnectionState.CAN_WRITE.value == 2
    assert ConnectionState.OPEN is ConnectionState.CAN_READ | ConnectionState.CAN_WRITE
    assert ConnectionState.OPEN & ~ConnectionState.CAN_WRITE is ConnectionState.CAN_READ


def test_type_aliases():
    assert connection.Address == tuple[str, int]
    assert set(connection.TransportProtocol.__args__) == {"tcp", "udp"}
    assert connection.TlsVersion.__args__ == (
        "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3",
        "DTLSv0.9", "DTLSv1", "DTLSv1.2", "QUICv1",
    )


@pytest.mark.parametrize("cls", [Connection, Client, Server])
def test_every_field_has_a_docstring(cls):
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    for stmt, following in zip(body, body[1:] + [None]):
        if isinstance(stmt, ast.AnnAssign):
            name = stmt.target.id
            assert isinstance(following, ast.Expr), f"{cls.__name__}.{name} has no docstring"
            assert isinstance(following.value.value, str), f"{cls.__name__}.{name}"


def test_fields_are_keyword_only():
    with pytest.raises(TypeError):
        Client(("127.0.0.1", 1), ("127.0.0.1", 2))  # type: ignore[misc]
    with pytest.raises(TypeError):
        Server(("example.com", 80))  # type: ignore[misc]
    assert all(f.kw_only for f in dataclasses.fields(Client) + dataclasses.fields(Server))


def test_required_fields():
    with pytest.raises(TypeError, match="sockname"):
        Client(peername=("127.0.0.1", 1))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="peername"):
        Client(sockname=("127.0.0.1", 1))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="address"):
        Server()  # type: ignore[call-arg]


# Defaults


def test_client_defaults():
    before = time.time()
    c = new_client()
    after = time.time()
    assert c.peername == ("127.0.0.1", 52000)
    assert c.sockname == ("127.0.0.1", 8080)
    assert c.state is ConnectionState.CLOSED
    assert c.transport_protocol == "tcp"
    assert c.error is None
    assert c.tls is False
    assert c.certificate_list == ()
    assert c.alpn is None
    assert c.alpn_offers == ()
    assert c.cipher is None
    assert c.cipher_list == ()
    assert c.tls_version is None
    assert c.sni is None
    assert before <= c.timestamp_start <= after
    assert c.timestamp_end is None
    assert c.timestamp_tls_setup is None
    assert c.mitmcert is None
    assert c.proxy_mode == ProxyMode.parse("regular")
    assert isinstance(c.proxy_mode, RegularMode)


def test_default_proxy_mode_is_parsed_once():
    assert new_client().proxy_mode is new_client().proxy_mode


def test_server_defaults():
    s = Server(address=("example.com", 80))
    assert s.address == ("example.com", 80)
    assert s.peername is None
    assert s.sockname is None
    assert s.state is ConnectionState.CLOSED
    assert s.transport_protocol == "tcp"
    assert s.tls is False
    assert s.certificate_list == ()
    assert s.timestamp_start is None
    assert s.timestamp_tcp_setup is None
    assert s.timestamp_tls_setup is None
    assert s.timestamp_end is None
    assert s.via is None
    assert Server(address=None).address is None


def test_ids_are_unique_uuid4_strings():
    ids = {new_client().id for _ in range(1000)} | {Server(address=None).id for _ in range(1000)}
    assert len(ids) == 2000
    for i in ids:
        u = uuid.UUID(i)
        assert str(u) == i
        assert u.version == 4
        assert u.variant == uuid.RFC_4122


# Properties


@pytest.mark.parametrize(
    "state, connected",
    [
        (ConnectionState.CLOSED, False),
        (ConnectionState.CAN_READ, False),
        (ConnectionState.CAN_WRITE, False),
        (ConnectionState.OPEN, True),
    ],
)
def test_connected(state, connected):
    assert new_client(state=state).connected is connected
    assert Server(address=None, state=state).connected is connected


def test_tls_established():
    c = new_client(tls=True)
    assert c.tls_established is False
    c.timestamp_tls_setup = 0.0  # a falsy timestamp still counts
    assert c.tls_established is True


@pytest.mark.parametrize("prop", ["connected", "tls_established"])
def test_read_only_properties(prop):
    with pytest.raises(AttributeError):
        setattr(new_client(), prop, True)


def test_eq_and_hash_by_id():
    a, b = new_client(), new_client()
    assert a != b
    b.id = a.id
    assert a == b and hash(a) == hash(b)
    assert a != a.id
    s = Server(address=None, id=a.id)
    assert s == a  # same id means the same connection, as in mitmproxy


# Deprecated aliases


def test_alpn_proto_negotiated():
    c = new_client(alpn=b"h2")
    with pytest.warns(DeprecationWarning, match="use Connection.alpn"):
        assert c.alpn_proto_negotiated == b"h2"


def test_client_address():
    c = new_client()
    with pytest.warns(DeprecationWarning, match="Client.address is deprecated"):
        assert c.address == ("127.0.0.1", 52000)
    with pytest.warns(DeprecationWarning):
        c.address = ("10.0.0.1", 1)
    assert c.peername == ("10.0.0.1", 1)


def test_client_cipher_name():
    c = new_client(cipher="AES")
    with pytest.warns(DeprecationWarning, match="use Client.cipher"):
        assert c.cipher_name == "AES"


@pytest.mark.parametrize("cls, prop", [(Client, "clientcert"), (Server, "cert")])
def test_certificate_aliases(certs, cls, prop):
    conn = new_client() if cls is Client else Server(address=None)
    with pytest.warns(DeprecationWarning, match=f"{cls.__name__}.{prop} is deprecated"):
        assert getattr(conn, prop) is None
    conn.certificate_list = certs
    with pytest.warns(DeprecationWarning):
        assert getattr(conn, prop) is certs[0]
    with pytest.warns(DeprecationWarning):
        setattr(conn, prop, certs[1])
    assert conn.certificate_list == [certs[1]]
    with pytest.warns(DeprecationWarning):
        setattr(conn, prop, None)
    assert conn.certificate_list == []


def test_server_ip_address():
    s = Server(address=("example.com", 80), peername=("192.0.2.1", 80))
    with pytest.warns(DeprecationWarning, match="use Server.peername"):
        assert s.ip_address == ("192.0.2.1", 80)


def test_warning_points_at_the_caller():
    with pytest.warns(DeprecationWarning) as record:
        new_client().cipher_name
    assert record[0].filename == __file__


# Server.__setattr__ guard


@pytest.mark.parametrize("attr, value", [
    ("address", ("other.example", 443)),
    ("via", ServerSpec.parse("http://other-proxy:8080")),
])
@pytest.mark.parametrize("state", [ConnectionState.OPEN, ConnectionState.CAN_READ])
def test_server_refuses_new_address_or_via_while_open(attr, value, state):
    s = Server(address=("example.com", 443), via=ServerSpec.parse("http://proxy:3128"))
    s.state = state
    old = getattr(s, attr)
    with pytest.raises(RuntimeError, match=f"Cannot change server.{attr} on open connection"):
        setattr(s, attr, value)
    assert getattr(s, attr) == old
    setattr(s, attr, old)  # assigning the current value is fine
    s.sni = "still.mutable"
    s.state = ConnectionState.CLOSED
    setattr(s, attr, value)
    assert getattr(s, attr) == value


def test_client_has_no_guard():
    c = new_client(state=ConnectionState.OPEN)
    c.peername = ("10.0.0.2", 2)
    assert c.peername == ("10.0.0.2", 2)


# str and repr


def test_str():
    c = new_client()
    assert str(c) == "Client(127.0.0.1:52000, state=closed)"
    c.state = ConnectionState.OPEN
    c.timestamp_tls_setup = 1.0
    assert str(c) == "Client(127.0.0.1:52000, state=open, tls)"
    c.alpn = b"h2"
    assert str(c) == "Client(127.0.0.1:52000, state=open, alpn=h2)"
    s = Server(address=("::1", 443), sockname=("::1", 5555))
    assert str(s) == "Server([::1]:443, state=closed, src_port=5555)"
    assert str(Server(address=None)) == "Server(<no address>, state=closed)"


def test_repr(certs):
    c = new_client(cipher_list=["A", "B"], sni="example.com")
    r = repr(c)
    assert r.startswith("Client({'id': '…" + c.id[-6:] + "', ")
    assert "'sni': 'example.com'" in r
    assert "'cipher_list': '<2 ciphers>'" in r
    assert "'error'" not in r  # defaults are left out
    assert repr(Server(address=("example.com", 80))).startswith("Server({'id': '…")


# State


def assert_plain(value):
    """State must be what a tnetstring can hold."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str)
            assert_plain(v)
    elif isinstance(value, list):
        for v in value:
            assert_plain(v)
    else:
        assert value is None or type(value) in (str, bytes, int, float, bool), repr(value)


def test_client_state_keys_and_values(certs):
    state = full_client(certs).get_state()
    assert state.keys() == CLIENT_KEYS
    assert_plain(state)
    assert state["peername"] == ["127.0.0.1", 52000]
    assert state["certificate_list"] == [c.to_pem() for c in certs]
    assert state["mitmcert"] == certs[0].to_pem()
    assert state["proxy_mode"] == "reverse:https://example.com@8443"
    assert state["alpn_offers"] == [b"h2", b"http/1.1"]
    assert state["tls_version"] == "TLSv1.3"


def test_server_state_keys_and_values(certs):
    state = full_server(certs).get_state()
    assert state.keys() == SERVER_KEYS
    assert_plain(state)
    assert state["address"] == ["example.com", 443]
    assert state["peername"] == ["2001:db8::1", 443, 0, 0]
    assert state["via"] == ["http", ["proxy.local", 3128]]


def test_default_state_is_plain():
    assert_plain(new_client().get_state())
    assert_plain(Server(address=None).get_state())


@pytest.mark.parametrize("make", [full_client, full_server])
def test_from_state_round_trip(certs, make):
    conn = make(certs)
    restored = type(conn).from_state(conn.get_state())
    assert restored is not conn
    assert restored.get_state() == conn.get_state()
    assert restored == conn  # same id
    for f in dataclasses.fields(conn):
        if f.name != "state":
            assert list_if_seq(getattr(restored, f.name)) == list_if_seq(getattr(conn, f.name))
    assert restored.state is ConnectionState.CLOSED  # the socket state is not recorded


def list_if_seq(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def test_restored_values_have_their_types(certs):
    c = Client.from_state(full_client(certs).get_state())
    assert isinstance(c.peername, tuple)
    assert all(isinstance(x, Cert) for x in c.certificate_list)
    assert isinstance(c.mitmcert, Cert)
    assert c.proxy_mode.address == ("example.com", 443)
    s = Server.from_state(full_server(certs).get_state())
    assert s.peername == ("2001:db8::1", 443, 0, 0)
    assert isinstance(s.via, ServerSpec) and s.via.scheme == "http"


def test_from_state_does_not_consume_its_argument(certs):
    state = full_client(certs).get_state()
    Client.from_state(state)
    assert state.keys() == CLIENT_KEYS


@pytest.mark.parametrize("make", [full_client, full_server])
def test_copy_is_equal_but_for_a_fresh_id(certs, make):
    conn = make(certs)
    dup = conn.copy()
    assert dup is not conn and dup != conn
    assert dup.id != conn.id
    uuid.UUID(dup.id)
    state, dup_state = conn.get_state(), dup.get_state()
    del state["id"], dup_state["id"]
    assert dup_state == state


def test_set_state(certs):
    source = full_client(certs)
    target = new_client()
    target.set_state(source.get_state())
    assert target.get_state() == source.get_state()
    assert target == source


def test_set_state_on_open_server_with_unchanged_address(certs):
    s = full_server(certs)
    s.state = ConnectionState.OPEN
    state = s.get_state()
    state["sni"] = "changed.example"
    s.set_state(state)
    assert s.sni == "changed.example"
    state["address"] = ["elsewhere.example", 443]
    with pytest.raises(RuntimeError):
        s.set_state(state)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.update(bogus=1), "expected keys"),
        (lambda s: s.pop("sni"), "expected keys"),
        (lambda s: s.update(tls_version="TLSv9"), "TLSv9"),
        (lambda s: s.update(transport_protocol="sctp"), "sctp"),
        (lambda s: s.update(peername=None), "peername must not be None"),
        (lambda s: s.update(peername=["127.0.0.1", 1, 2]), "expected 2 items"),
        (lambda s: s.update(peername=["127.0.0.1", "80"]), "expected int"),
        (lambda s: s.update(peername=80), "expected a list"),
        (lambda s: s.update(alpn_offers=b"h2"), "expected a list"),
        (lambda s: s.update(tls="yes"), "expected bool"),
        (lambda s: s.update(timestamp_start=True), "expected float"),
        (lambda s: s.update(alpn="h2"), "expected bytes"),
        (lambda s: s.update(proxy_mode="nope"), "unknown mode"),
    ],
)
def test_invalid_state(change, message):
    state = new_client().get_state()
    change(state)
    with pytest.raises(ValueError, match=message):
        Client.from_state(state)
    with pytest.raises(ValueError, match=message):
        new_client().set_state(state)


def test_state_from_mitmproxy_uses_tuples():
    """mitmproxy's own get_state() yields tuples where we write lists."""
    state = new_client().get_state()
    state["peername"] = ("127.0.0.1", 1)
    state["alpn_offers"] = (b"h2",)
    c = Client.from_state(state)
    assert c.peername == ("127.0.0.1", 1)
    assert c.alpn_offers == [b"h2"]


def test_timestamps_accept_ints():
    state = new_client().get_state()
    state["timestamp_start"] = 7
    c = Client.from_state(state)
    assert c.timestamp_start == 7.0 and isinstance(c.timestamp_start, float)
