"""Shared fixtures: real origin servers (HTTP, HTTPS, HTTP/2 with a test CA) and the real
proxy command, on 127.0.0.1."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.support import flowlog
from tests.support.origin import Origin
from tests.support.proxyproc import ProxyProcess
from tests.support.tls_origin import H2Origin, HttpsOrigin, TestCA

FLOWLOG_SCRIPT = str(Path(flowlog.__file__))
"""The addon script that logs every event's flow (`tests.support.flowlog`)."""


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


@pytest.fixture
def test_ca(tmp_path):
    """The CA the HTTPS origins' certificates come from."""
    return TestCA(tmp_path / "origin-ca")


@pytest.fixture
def https_origin(test_ca):
    server = HttpsOrigin(test_ca)
    yield server
    server.stop()


@pytest.fixture
def h2_origin(test_ca):
    server = H2Origin(test_ca)
    yield server
    server.stop()


@pytest.fixture
def tls_proxy(start_proxy, test_ca, tmp_path):
    """start(*args) -> (proxy, fastproxy CA PEM path, flow log path): a proxy that trusts
    the test CA (unless ``trust=False``) and logs every event's flow (unless
    ``flowlog_script=False``)."""
    def start(*args, trust=True, flowlog_script=True):
        log = tmp_path / f"flows-{random.getrandbits(32)}.jsonl"
        script = ["-s", FLOWLOG_SCRIPT] if flowlog_script else []
        ca = ["--set", f"ssl_verify_upstream_trusted_ca={test_ca.ca_pem}"] if trust else []
        proxy = start_proxy(*script, *ca, *args, env={"FLOWLOG": str(log)})
        return proxy, tmp_path / "confdir" / "fastproxy-ca-cert.pem", log
    return start
