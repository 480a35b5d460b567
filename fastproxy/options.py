"""Typed options: every command-line flag is one, `--set name=value` sets any of them.

Addons register their own options with `loader.add_option(...)` from their `load` hook.
Changing options calls every subscriber (the addon manager, which fires `configure`) with
the set of names that changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

MiB = 1024 * 1024


@dataclass(slots=True)
class Option:
    """One option: its type, default, current value and help text."""

    name: str
    typespec: type
    default: Any
    help: str
    value: Any
    choices: tuple[str, ...] | None = None


class OptionsError(ValueError):
    """An unknown option or a value of the wrong type."""


class Options:
    """The whole configuration; options are read as attributes (`options.listen_port`).

    Each value is also kept in the instance's ``__dict__`` (`_publish`), where attribute
    lookup finds it without calling `__getattr__`: the proxy reads options on every
    request. Names the class itself has (methods) are read through `__getattr__` never, as
    before: the class attribute wins.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_options", {})
        object.__setattr__(self, "_subscribers", [])
        for args in CORE_OPTIONS:
            self.add_option(*args)

    def add_option(self, name: str, typespec: type, default: Any, help: str,
                   choices: Iterable[str] | None = None) -> None:
        """Register an option (core or addon); registering the same option twice is fine."""
        if name in self._options:
            return
        option = self._options[name] = Option(name, typespec, default, help, _copy(default),
                                              tuple(choices) if choices else None)
        self._publish(option)

    def _publish(self, option: Option) -> None:
        if not hasattr(Options, option.name):
            object.__setattr__(self, option.name, option.value)

    def subscribe(self, callback: Callable[[set[str]], None]) -> None:
        """Call `callback(updated_names)` after every change."""
        self._subscribers.append(callback)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._options[name].value
        except KeyError:
            raise AttributeError(f"no option named {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self.update(**{name: value})

    def __contains__(self, name: str) -> bool:
        return name in self._options

    def __iter__(self):
        return iter(self._options.values())

    def keys(self) -> set[str]:
        return set(self._options)

    def update(self, **values: Any) -> None:
        """Set several options at once; subscribers hear once, with the changed names."""
        for name, value in values.items():
            option = self._get(name)
            _check_type(option, value)
            option.value = value
            self._publish(option)
        updated = set(values)
        if updated:
            for callback in self._subscribers:
                callback(updated)

    def set(self, *specs: str) -> None:
        """Apply `name=value` strings as given to `--set` (a list option appends, its
        first value replacing the default)."""
        values: dict[str, Any] = {}
        for spec in specs:
            name, sep, text = spec.partition("=")
            if not sep:
                raise OptionsError(f"--set takes name=value, got {spec!r}")
            option = self._get(name.strip())
            parsed = parse_value(option, text)
            if option.typespec is list:
                # Appends to what was set before; the first value replaces a default,
                # so `--set mode=socks5` means socks5 alone, not regular and socks5.
                current = option.value if option.value != option.default else []
                parsed = values.get(option.name, list(current)) + parsed
            values[option.name] = parsed
        self.update(**values)

    def _get(self, name: str) -> Option:
        try:
            return self._options[name]
        except KeyError:
            raise OptionsError(f"unknown option {name!r}") from None


def parse_value(option: Option, text: str) -> Any:
    """Turn a command-line string into a value of the option's type."""
    kind = option.typespec
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on", ""):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise OptionsError(f"{option.name}: expected true or false, got {text!r}")
    if kind is list:
        return [text]
    if kind is str and option.default is None and text == "":
        return None
    try:
        return kind(text)
    except ValueError:
        raise OptionsError(f"{option.name}: expected {kind.__name__}, got {text!r}") from None


def _check_type(option: Option, value: Any) -> None:
    if value is None and option.default is None:
        return
    kind = option.typespec
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise OptionsError(f"{option.name}: expected {kind.__name__}, got {value!r}")
    if option.choices and value not in option.choices:
        raise OptionsError(f"{option.name}: must be one of {', '.join(option.choices)}")


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


CORE_OPTIONS: tuple[tuple, ...] = (
    ("listen_host", str, "127.0.0.1", "Address to listen on."),
    ("listen_port", int, None,
     "Port to listen on (0 picks a free one); unset, each mode's own: 8080, socks5 1080."),
    ("mode", list, ["regular"],
     "Proxy modes, one listener each: regular, reverse:URL (http://, https://, tcp://), "
     "upstream:URL, socks5, transparent; MODE@[HOST:]PORT listens elsewhere than "
     "listen_host:listen_port. -m/--mode is repeatable."),
    ("workers", int, 1, "Worker processes sharing the listening port (SO_REUSEPORT)."),
    ("worker_index", int, 0, "This process's worker number (set by the proxy itself)."),
    ("scripts", list, [], "Addon scripts to load (-s)."),
    ("confdir", str, "~/.fastproxy", "Where the CA and other state live."),
    ("ssl_insecure", bool, False, "Do not verify upstream TLS certificates."),
    ("ssl_verify_upstream_trusted_ca", str, None,
     "A PEM file of CA certificates trusted for upstream TLS, besides the system store."),
    ("certs", list, [],
     "Certificates to serve instead of minted ones: DOMAIN=PEM (cert and key), e.g. "
     "*.example.com=cert.pem; a bare PEM is for every domain."),
    ("http2", bool, True, "Speak HTTP/2 (offer h2 in ALPN) with clients and upstreams."),
    ("ignore_hosts", list, [], "Regexes of host:port to pass through untouched."),
    ("allow_hosts", list, [], "Regexes of host:port to intercept; all others pass through."),
    ("tcp_hosts", list, [], "Regexes of host:port to treat as raw TCP."),
    ("keep_host_header", bool, False, "Reverse mode: keep the client's Host header."),
    ("flow_detail", int, 1, "Console output per flow: 0 none, 1 one line, 2 headers, 3 bodies."),
    ("termlog_verbosity", str, "info", "Log level printed to the terminal.",
     ("debug", "info", "warn", "error")),
    ("body_size_limit", int, 64 * MiB,
     "Largest body gathered for addons; larger ones are refused (413 / 502)."),
    ("max_head_size", int, 64 * 1024, "Largest HTTP/1 head (request or status line and headers)."),
    ("max_headers", int, 100, "Most header fields in one HTTP/1 head."),
    ("idle_timeout", float, 120.0, "Seconds a client connection may sit idle between requests."),
    ("head_timeout", float, 30.0, "Seconds a client may take to send a whole request head."),
    ("connect_timeout", float, 10.0, "Seconds to wait for an upstream connection."),
    ("read_timeout", float, 60.0,
     "Seconds to wait for an upstream's response head once the request went out; then the "
     "client gets 504 (HTTP/1 and HTTP/2)."),
    ("upstream_pool_size", int, 256, "Idle upstream connections kept per host:port."),
    ("upstream_idle_timeout", float, 60.0, "Seconds an idle upstream connection is kept."),
    ("h2_max_concurrent_streams", int, 100,
     "HTTP/2: streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS)."),
    ("h2_max_resets", int, 2000,
     "HTTP/2: streams a client may reset on one connection before GOAWAY "
     "ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487)."),
    ("h2_max_resets_per_second", int, 200,
     "HTTP/2: stream resets per second a client may send before GOAWAY ENHANCE_YOUR_CALM."),
    ("h2_max_settings_per_second", int, 100,
     "HTTP/2: SETTINGS frames per second a client may send before GOAWAY ENHANCE_YOUR_CALM."),
    ("h2_max_pings_per_second", int, 100,
     "HTTP/2: PING frames per second a client may send before GOAWAY ENHANCE_YOUR_CALM."),
    ("h2_max_priority_per_second", int, 1000,
     "HTTP/2: PRIORITY frames per second a client may send before GOAWAY ENHANCE_YOUR_CALM."),
    ("h2_max_window_updates_per_second", int, 10000,
     "HTTP/2: WINDOW_UPDATE frames per second a client may send before GOAWAY "
     "ENHANCE_YOUR_CALM."),
    ("h2_max_header_list_size", int, 64 * 1024,
     "HTTP/2: largest decoded header list (SETTINGS_MAX_HEADER_LIST_SIZE; bounds HPACK "
     "and CONTINUATION abuse); past it GOAWAY COMPRESSION_ERROR."),
    ("h2_stall_timeout", float, 60.0,
     "HTTP/2: seconds a stream may wait for a client's flow-control window to open; "
     "then GOAWAY ENHANCE_YOUR_CALM."),
    ("upstream_auth", str, None,
     "upstream mode: user:pass sent to the upstream proxy as Proxy-Authorization (Basic)."),
    ("proxyauth", str, None,
     "Require proxy authentication (regular, upstream and socks5 modes): user:pass, or "
     "@FILE for an htpasswd file (bcrypt and SHA1 entries)."),
    ("block_global", bool, True,
     "Refuse clients from public (global) IP addresses."),
    ("block_private", bool, False,
     "Refuse clients from private IP addresses (loopback is never refused)."),
)
