"""Shared fixtures: a real origin server and the real proxy command, on 127.0.0.1."""

from __future__ import annotations

import pytest

from tests.support.origin import Origin
from tests.support.proxyproc import ProxyProcess


@pytest.fixture
def origin():
    server = Origin()
    yield server
    server.stop()


@pytest.fixture
def start_proxy(tmp_path):
    """start_proxy(*args) -> ProxyProcess; every proxy started is stopped at teardown."""
    started: list[ProxyProcess] = []

    def start(*args: str, env: dict | None = None) -> ProxyProcess:
        proxy = ProxyProcess(*args, tmp_path=tmp_path, env=env)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
