"""The proxy modes, where mitmproxy scripts import them (`mitmproxy.proxy.mode_specs`);
they live in `fastproxy.mode_specs`, a model the connection objects use."""

from fastproxy.mode_specs import (
                                  ProxyMode,
                                  RegularMode,
                                  ReverseMode,
                                  Socks5Mode,
                                  TransparentMode,
                                  UpstreamMode,
)

__all__ = ["ProxyMode", "RegularMode", "TransparentMode", "Socks5Mode", "UpstreamMode",
           "ReverseMode"]
