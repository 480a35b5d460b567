import dataclasses

import pytest

from fastproxy.net.server_spec import ServerSpec
from fastproxy.mode_specs import (
    ProxyMode,
    RegularMode,
    ReverseMode,
    Socks5Mode,
    TransparentMode,
    UpstreamMode,
)


@pytest.mark.parametrize(
    "spec, cls, data, host, port",
    [
        ("regular", RegularMode, "", None, None),
        ("transparent", TransparentMode, "", None, None),
        ("socks5", Socks5Mode, "", None, None),
        ("upstream:http://proxy:3128", UpstreamMode, "http://proxy:3128", None, None),
        ("reverse:https://example.com", ReverseMode, "https://example.com", None, None),
        ("regular@8081", RegularMode, "", None, 8081),
        ("socks5@127.0.0.1:1081", Socks5Mode, "", "127.0.0.1", 1081),
        ("regular@[::1]:8080", RegularMode, "", "::1", 8080),
        ("regular@:8080", RegularMode, "", "", 8080),
        ("reverse:http://example.com:8000@0.0.0.0:80", ReverseMode, "http://example.com:8000",
         "0.0.0.0", 80),
        ("REGULAR", RegularMode, "", None, None),
    ],
)
def test_parse(spec, cls, data, host, port):
    mode = ProxyMode.parse(spec)
    assert type(mode) is cls
    assert mode.full_spec == spec
    assert mode.type_name == cls.__name__.removesuffix("Mode").lower()
    assert mode.data == data
    assert mode.custom_listen_host == host
    assert mode.custom_listen_port == port


@pytest.mark.parametrize(
    "data, scheme, address, transport",
    [
        ("example.com", "https", ("example.com", 443), "tcp"),
        ("http://example.com", "http", ("example.com", 80), "tcp"),
        ("https://example.com:8443/", "https", ("example.com", 8443), "tcp"),
        ("tcp://10.0.0.1:22", "tcp", ("10.0.0.1", 22), "tcp"),
        ("tls://example.com:993", "tls", ("example.com", 993), "tcp"),
        ("http://[::1]:8080", "http", ("::1", 8080), "tcp"),
        ("dns://8.8.8.8", "dns", ("8.8.8.8", 53), "udp"),
        ("udp://example.com:5000", "udp", ("example.com", 5000), "udp"),
    ],
)
def test_reverse_target(data, scheme, address, transport):
    mode = ProxyMode.parse(f"reverse:{data}")
    assert mode.scheme == scheme
    assert mode.address == address
    assert mode.transport_protocol == transport
    assert mode.description == f"reverse proxy to {data}"


@pytest.mark.parametrize(
    "data, scheme, address",
    [
        ("proxy.local", "http", ("proxy.local", 80)),
        ("http://proxy.local:3128", "http", ("proxy.local", 3128)),
        ("https://proxy.local", "https", ("proxy.local", 443)),
    ],
)
def test_upstream_target(data, scheme, address):
    mode = ProxyMode.parse(f"upstream:{data}")
    assert (mode.scheme, mode.address) == (scheme, address)
    assert mode.transport_protocol == "tcp"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "unknown mode ''"),
        ("wireguard", "unknown mode 'wireguard'"),
        ("regular:foo", "regular takes no argument"),
        ("socks5:x@1080", "socks5 takes no argument"),
        ("transparent:x", "transparent takes no argument"),
        ("reverse", "reverse needs a URL"),
        ("upstream:", "upstream needs a URL"),
        ("reverse:ftp://example.com", "scheme 'ftp' is not one of"),
        ("reverse:tcp://example.com", "tcp needs a port"),
        ("reverse:https://example.com/path", "expected \\[scheme://\\]host\\[:port\\]"),
        ("reverse:http://bad_host-.com", "bad host"),
        ("reverse:http://example.com:0", "port 0 is out of range"),
        ("reverse:http://example.com:65536", "port 65536 is out of range"),
        ("upstream:tls://proxy:3128", "upstream proxy scheme must be http or https"),
        ("regular@", "bad listen port ''"),
        ("regular@abc", "bad listen port 'abc'"),
        ("regular@127.0.0.1:-1", "bad listen port '-1'"),
        ("regular@65536", "bad listen port '65536'"),
    ],
)
def test_parse_errors(spec, message):
    with pytest.raises(ValueError, match=message) as e:
        ProxyMode.parse(spec)
    assert f"invalid mode {spec!r}" in str(e.value)


def test_parse_rejects_non_strings():
    with pytest.raises(ValueError, match="expected a string"):
        ProxyMode.parse(["regular"])  # type: ignore[arg-type]


def test_subclass_parse_only_accepts_its_own_mode():
    assert isinstance(ReverseMode.parse("reverse:example.com"), ReverseMode)
    with pytest.raises(ValueError, match="not a regular mode"):
        RegularMode.parse("socks5")


def test_equality_and_hash_by_spec():
    a, b = ProxyMode.parse("regular@8080"), ProxyMode.parse("regular@8080")
    assert a == b and hash(a) == hash(b)
    assert a != ProxyMode.parse("regular")
    assert a != "regular@8080"
    direct = RegularMode(full_spec="regular", data="", custom_listen_host=None,
                         custom_listen_port=None)
    assert direct == ProxyMode.parse("regular") and direct is not ProxyMode.parse("regular")
    assert len({a, b, ProxyMode.parse("socks5")}) == 2


@pytest.mark.parametrize("attr", ["full_spec", "data", "custom_listen_port", "scheme", "address"])
def test_frozen(attr):
    mode = ProxyMode.parse("reverse:example.com")
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(mode, attr, None)


def test_frozen_without_mode_data():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ProxyMode.parse("regular").anything = 1  # type: ignore[attr-defined]


def test_repr():
    assert repr(ProxyMode.parse("socks5@1080")) == "ProxyMode.parse('socks5@1080')"


def test_listen_host_and_port():
    regular = ProxyMode.parse("regular")
    assert regular.listen_host() == ""
    assert regular.listen_host("127.0.0.1") == "127.0.0.1"
    assert regular.listen_port() == 8080
    assert regular.listen_port(9000) == 9000
    assert ProxyMode.parse("socks5").listen_port() == 1080
    custom = ProxyMode.parse("regular@10.0.0.1:81")
    assert custom.listen_host("127.0.0.1") == "10.0.0.1"
    assert custom.listen_port(9000) == 81


def test_state_round_trip():
    mode = ProxyMode.parse("reverse:tls://example.com:993@8993")
    assert mode.get_state() == "reverse:tls://example.com:993@8993"
    restored = ProxyMode.from_state(mode.get_state())
    assert restored == mode
    assert isinstance(restored, ReverseMode)
    assert restored.address == ("example.com", 993)


def test_set_state_is_refused_for_a_different_spec():
    mode = ProxyMode.parse("regular")
    mode.set_state("regular")
    with pytest.raises(dataclasses.FrozenInstanceError):
        mode.set_state("socks5")
    assert mode.full_spec == "regular"


# ServerSpec


@pytest.mark.parametrize(
    "spec, default, expected",
    [
        ("http://example.com", None, ("http", ("example.com", 80))),
        ("https://example.com/", None, ("https", ("example.com", 443))),
        ("HTTP://Example.com:8080", None, ("http", ("Example.com", 8080))),
        ("example.com", "https", ("https", ("example.com", 443))),
        ("example.com:25", "tcp", ("tcp", ("example.com", 25))),
        ("tls://192.0.2.1:853", None, ("tls", ("192.0.2.1", 853))),
        ("http://[2001:db8::1]", None, ("http", ("2001:db8::1", 80))),
        ("quic://example.com", None, ("quic", ("example.com", 443))),
        ("http://under_score.example.", None, ("http", ("under_score.example.", 80))),
    ],
)
def test_server_spec_parse(spec, default, expected):
    parsed = ServerSpec.parse(spec, default_scheme=default)
    assert parsed == expected
    assert (parsed.scheme, parsed.address) == expected


@pytest.mark.parametrize(
    "spec, default, message",
    [
        ("example.com", None, "scheme '\\(none\\)' is not one of"),
        ("gopher://example.com:70", None, "scheme 'gopher'"),
        ("http://example.com/path", None, "expected"),
        ("http://", None, "expected"),
        ("http://exa mple.com", None, "bad host"),
        ("http://-example.com", None, "bad host"),
        ("http://" + "a" * 64 + ".com", None, "bad host"),
        ("tls://example.com", None, "tls needs a port"),
        ("http://example.com:99999", None, "out of range"),
    ],
)
def test_server_spec_parse_errors(spec, default, message):
    with pytest.raises(ValueError, match=message):
        ServerSpec.parse(spec, default_scheme=default)


def test_server_spec_state_round_trip():
    spec = ServerSpec.parse("https://proxy.example:3128")
    assert spec.get_state() == ["https", ["proxy.example", 3128]]
    restored = ServerSpec.from_state(spec.get_state())
    assert restored == spec
    assert isinstance(restored.address, tuple)
    # mitmproxy writes the same data with tuples
    assert ServerSpec.from_state(("https", ("proxy.example", 3128))) == spec


@pytest.mark.parametrize(
    "state",
    [None, "http://x", ["ftp", ["x", 1]], ["http", ["x"]], ["http", [1, 80]], ["http", ["x", 0]],
     ["http", ["x", True]]],
)
def test_server_spec_from_bad_state(state):
    with pytest.raises(ValueError, match="invalid server spec state"):
        ServerSpec.from_state(state)


def test_server_spec_str():
    assert str(ServerSpec.parse("http://[::1]:8080")) == "http://[::1]:8080"
    assert str(ServerSpec.parse("tcp://example.com:22")) == "tcp://example.com:22"
