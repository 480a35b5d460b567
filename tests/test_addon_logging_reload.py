"""Addon logging through the standard `logging` module (shown at `termlog_verbosity`,
delivered to `log` / `add_log`), and scripts reloaded when their file changes: real
proxy process, real HTTP traffic."""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest

LOGGING_ADDON = r'''
import json, logging, os
from fastproxy import ctx

OUT = os.environ["LOG_OUT"]

class Hooks:
    def request(self, flow):
        logging.debug("addon-debug")
        logging.info("addon-info")
        logging.warning("addon-warning")
        logging.getLogger("myaddon").error("addon-error")
        ctx.log.info("ctxlog-info")

    def log(self, entry):
        if entry.msg.startswith(("addon-", "ctxlog-")):
            with open(OUT, "a") as f:
                f.write(json.dumps(["log", entry.msg, entry.level]) + "\n")

    def add_log(self, entry):
        if entry.msg.startswith("addon-"):
            with open(OUT, "a") as f:
                f.write(json.dumps(["add_log", entry.msg, entry.level]) + "\n")

addons = [Hooks()]
'''


def wait_lines(path, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            break
        time.sleep(0.05)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("verbosity,shown", [
    ("debug", {"addon-debug", "addon-info", "addon-warning", "addon-error", "ctxlog-info"}),
    ("info", {"addon-info", "addon-warning", "addon-error", "ctxlog-info"}),
    ("warn", {"addon-warning", "addon-error"}),
    ("error", {"addon-error"}),
])
def test_addon_logging_at_each_verbosity(verbosity, shown, tmp_path, start_proxy, origin):
    script, out = tmp_path / "logging_addon.py", tmp_path / "log.jsonl"
    script.write_text(LOGGING_ADDON)
    proxy = start_proxy("-q", "--set", f"termlog_verbosity={verbosity}", "-s", str(script),
                        env={"LOG_OUT": str(out)})
    assert httpx.get(origin.url("/"), proxy=proxy.url, timeout=10).status_code == 200
    proxy.stop()
    err = proxy.stderr
    everything = {"addon-debug", "addon-info", "addon-warning", "addon-error", "ctxlog-info"}
    assert {m for m in everything if m in err} == shown
    assert "WARNING:root:" not in err and "ERROR:myaddon:" not in err
    if verbosity != "debug":
        assert "upstream pool closed" not in err  # fastproxy's own debug records stay hidden
    # Every record reaches `log` and `add_log`, whatever the terminal shows.
    entries = wait_lines(out, 9)
    assert sorted(e[1] for e in entries if e[0] == "log") == sorted(everything)
    assert {(e[1], e[2]) for e in entries if e[0] == "add_log"} == {
        ("addon-debug", "debug"), ("addon-info", "info"), ("addon-warning", "warn"),
        ("addon-error", "error")}


VERSION = r'''
import json, os
OUT = os.environ["RELOAD_OUT"]
V = {version!r}

def note(*event):
    with open(OUT, "a") as f:
        f.write(json.dumps([V, *event]) + "\n")

class Versioned:
    def load(self, loader):
        note("load")
    def configure(self, updated):
        note("configure", "listen_port" in updated)
    def running(self):
        note("running")
    def response(self, flow):
        flow.response.headers["x-version"] = V
    def done(self):
        note("done")

addons = [Versioned()]
'''


def rewrite(path, text: str) -> None:
    path.write_text(text)
    stamp = time.time() + 5 * (1 + rewrite.count)  # a new mtime even within one tick
    rewrite.count += 1
    os.utime(path, (stamp, stamp))


rewrite.count = 0


def version_of(proxy, origin) -> str | None:
    return httpx.get(origin.url("/"), proxy=proxy.url, timeout=10).headers.get("x-version")


def wait_version(proxy, origin, expected, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if version_of(proxy, origin) == expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"version {expected!r} never served; stderr: {proxy.stderr}")


def test_script_reloaded_on_edit(tmp_path, start_proxy, origin):
    script, out = tmp_path / "versioned.py", tmp_path / "reload.jsonl"
    script.write_text(VERSION.format(version="1"))
    proxy = start_proxy("-s", str(script), "-q", "--set", "termlog_verbosity=info",
                        env={"RELOAD_OUT": str(out)})
    assert version_of(proxy, origin) == "1"
    rewrite(script, VERSION.format(version="2"))
    wait_version(proxy, origin, "2")
    events = wait_lines(out, 7)
    assert events[:3] == [["1", "load"], ["1", "configure", True], ["1", "running"]]
    assert events[3:7] == [["1", "done"], ["2", "load"], ["2", "configure", True], ["2", "running"]]
    # A broken edit: one line in the log, the proxy keeps serving (without the script).
    rewrite(script, "def response(flow:\n")
    wait_version(proxy, origin, None)
    lines = [line for line in proxy.stderr.splitlines() if "cannot load script" in line]
    assert len(lines) == 1 and "SyntaxError" in lines[0] and "Traceback" not in proxy.stderr
    rewrite(script, VERSION.format(version="3"))
    wait_version(proxy, origin, "3")
    proxy.stop()
    assert wait_lines(out, 12)[-1] == ["3", "done"]
