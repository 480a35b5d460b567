"""`fastproxy run`: help, --set, console output, workers, clean stops."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from fastproxy.addonmanager import AddonManager
from fastproxy.cli import default_addons
from fastproxy.options import Options


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastproxy.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_run_help_lists_every_option():
    out = run_cli("run", "--help")
    assert out.returncode == 0
    options = Options()
    AddonManager(options).add(*default_addons())
    for name in options.keys():
        assert f"  {name} (" in out.stdout, name
    for flag in ("--listen-port", "--mode", "--set", "--workers", "-q", "-s"):
        assert flag in out.stdout


@pytest.mark.parametrize("spec, message", [
    ("listen_port=abc", "listen_port: expected int, got 'abc'"),
    ("no_such_option=1", "unknown option 'no_such_option'"),
    ("ssl_insecure=maybe", "ssl_insecure: expected true or false"),
    ("termlog_verbosity=loud", "termlog_verbosity: must be one of"),
    ("listen_port", "--set takes name=value"),
])
def test_bad_set_values_are_clear_errors(spec, message, tmp_path):
    out = run_cli("run", "-p", "0", "--set", f"confdir={tmp_path}", "--set", spec)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_set_reaches_configure_and_takes_effect(origin, start_proxy, tmp_path):
    script = tmp_path / "show.py"
    seen = tmp_path / "seen.txt"
    script.write_text(f"def configure(options, updated):\n"
                      f"    if 'max_headers' in updated:\n"
                      f"        open({str(seen)!r}, 'a').write(str(options.max_headers) + '\\n')\n")
    proxy = start_proxy("-q", "-s", str(script), "--set", "max_headers=8")
    assert seen.read_text().split() == ["8"]
    many = {f"x-h{i}": "v" for i in range(10)}
    with httpx.Client(proxy=proxy.url, timeout=10) as client:
        assert client.get(origin.url("/few"), headers={"x-a": "1"}).status_code == 200
        assert client.get(origin.url("/many"), headers=many).status_code == 400


def test_default_prints_one_entry_per_flow(origin, start_proxy):
    proxy = start_proxy()
    with httpx.Client(proxy=proxy.url, timeout=10) as client:
        for path in ("/one", "/two"):
            assert client.get(origin.url(path)).status_code == 200
    proxy.stop()
    out = proxy.stdout
    for path in ("/one", "/two"):
        assert out.count(f"GET http://127.0.0.1:{origin.port}{path}") == 1
    assert out.count("<< 200 OK 5b") == 2


def test_quiet_prints_nothing_per_flow(origin, start_proxy):
    proxy = start_proxy("-q")
    with httpx.Client(proxy=proxy.url, timeout=10) as client:
        assert client.get(origin.url("/quiet")).status_code == 200
    proxy.stop()
    assert "/quiet" not in proxy.stdout + proxy.stderr
    assert proxy.stdout == ""


def test_workers_serve_and_stop_cleanly(origin, start_proxy):
    proxy = start_proxy("-q", "--workers", "2")
    for i in range(12):  # new connections: the kernel spreads them over the workers
        response = httpx.get(origin.url(f"/w{i}"), proxy=proxy.url, timeout=10)
        assert response.headers["x-path"] == f"/w{i}"
    assert proxy.stop() == 0
    assert "Traceback" not in proxy.stderr


def test_sigint_stops_cleanly(start_proxy):
    import signal
    proxy = start_proxy("-q")
    assert proxy.stop(signal.SIGINT) == 0
    assert "Traceback" not in proxy.stderr
