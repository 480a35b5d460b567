"""What can sit between wrk and the origin: one registry, one small factory each.

A target starts (or, for `direct`, does not start) a server on a free port in front of the
origin. `forward` targets are proxies in regular mode: the client sends absolute-form
request targets (RFC 9112 §3.2.2) and CONNECT. New rows (TLS interception, recording with
-w, ...) are one more entry here plus, if needed, a scenario in scenarios.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import peers
from bench.proc import BENCH, ROOT, WORK, Server


@dataclass(frozen=True)
class Target:
    """One thing to measure. `start(port, origin_port)` returns an unstarted Server."""

    name: str
    label: str
    start: Callable[[int, int], Server] | None  # None: load the origin itself
    forward: bool = False
    family: str = "fastproxy"


def fastproxy_exe() -> Path:
    here = Path(sys.executable).parent / "fastproxy"
    return here if here.exists() else ROOT / ".venv" / "bin" / "fastproxy"


def fastproxy_ready() -> tuple[bool, str]:
    """Whether `fastproxy run --help` works (the CLI is being written alongside)."""
    try:
        out = subprocess.run([str(fastproxy_exe()), "run", "--help"], check=False,
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return False, str(e)
    return out.returncode == 0, (out.stderr or out.stdout).strip()[-300:]


def fastproxy(port: int, mode: str, *extra: str, name: str = "fastproxy",
              source: Path | None = None) -> Server:
    """`fastproxy run` in `mode`; from the checkout at `source` instead of this one when
    given (a `--baseline` build)."""
    options = ["run", "--listen-host", "127.0.0.1", "-p", str(port), "-q", "--mode", mode,
               "--set", f"confdir={WORK / 'fastproxy-conf'}", *extra]
    if source is None:
        return Server(name, [str(fastproxy_exe()), *options], port)
    env = {**os.environ, "PYTHONPATH": str(source)}  # found before the editable install
    return Server(name, [sys.executable, "-m", "fastproxy.cli", *options], port, env=env)


def add_baseline(source: Path, ref: str) -> None:
    """Measure the build at `source` (commit `ref`) beside this one: its rows follow the
    current build's in the same interleaved rounds, so the two compare run for run."""
    base = [
        Target("fastproxy-base", f"fastproxy reverse at {ref} (baseline)",
               lambda p, o: fastproxy(p, _reverse(o), name="fastproxy-base", source=source)),
        Target("fastproxy-regular-base", f"fastproxy regular at {ref} (baseline)",
               lambda p, o: fastproxy(p, "regular", name="fastproxy-regular-base",
                                      source=source), forward=True),
    ]
    items = list(HTTP_TARGETS.items())
    HTTP_TARGETS.clear()
    for name, target in items:
        HTTP_TARGETS[name] = target
        if name == "fastproxy-regular":
            HTTP_TARGETS.update((t.name, t) for t in base)


def _reverse(origin_port: int) -> str:
    return f"reverse:http://127.0.0.1:{origin_port}"


NOOP_ADDON = str(BENCH / "addons" / "noop.py")

HTTP_TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("direct", "direct (origin, no proxy)", None, family="direct"),
    Target("fastproxy", "fastproxy reverse",
           lambda p, o: fastproxy(p, _reverse(o))),
    Target("fastproxy-regular", "fastproxy regular (absolute-form)",
           lambda p, o: fastproxy(p, "regular"), forward=True),
    Target("fastproxy-addon", "fastproxy reverse + no-op addon",
           lambda p, o: fastproxy(p, _reverse(o), "-s", NOOP_ADDON)),
    Target("fastproxy-w2", "fastproxy reverse --workers 2",
           lambda p, o: fastproxy(p, _reverse(o), "--workers", "2")),
    Target("nginx", "nginx proxy_pass (C anchor)",
           lambda p, o: peers.nginx_proxy(p, o), family="nginx"),
    Target("mitmdump", "mitmdump reverse (Python anchor)",
           lambda p, o: peers.mitmdump(p, _reverse(o)), family="mitmdump"),
]}
