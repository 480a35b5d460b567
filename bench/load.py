"""wrk as the load generator, with a Lua done() hook that prints the figures as JSON.

wrk's own text report rounds latency; the hook prints p50/p99 in microseconds, request and
byte counts, and each error class. For a forward proxy (regular mode) the script sets
`wrk.path` to the absolute-form target (RFC 9112 §3.2.2) and Host to the origin; wrk
still builds the request once (a static request, no Lua per request).
"""
from __future__ import annotations

import json
import subprocess
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from bench.proc import WORK

MARK = "BENCHJSON "

_DONE = r"""
done = function(s, lat, req)
  local e = s.errors
  io.write(string.format(
    '%s{"requests":%.0f,"bytes":%.0f,"duration_us":%.0f,"p50_us":%.0f,"p99_us":%.0f,' ..
    '"max_us":%.0f,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,' ..
    '"err_timeout":%d}\n', "MARK", s.requests, s.bytes, s.duration,
    lat:percentile(50), lat:percentile(99), lat.max, e.connect, e.read, e.write,
    e.status, e.timeout))
end
""".replace("MARK", MARK)


@dataclass
class WrkResult:
    """One wrk run: counts from done(), derived rates."""

    requests: int
    bytes: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    errors: dict = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s

    @property
    def mbps(self) -> float:
        return self.bytes / self.duration_s / 1e6

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def lua_script(absolute_target: str | None = None, host: str | None = None) -> Path:
    """Write (once) the Lua script: the done() hook, optionally an absolute-form target."""
    lines = []
    if absolute_target:
        lines.append(f'wrk.path = "{absolute_target}"')
    if host:
        lines.append(f'wrk.headers["Host"] = "{host}"')
    body = "\n".join(lines) + _DONE
    path = WORK / "lua" / f"wrk-{zlib.crc32(body.encode()):08x}.lua"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != body:
        path.write_text(body)
    return path


def parse(stdout: str) -> WrkResult:
    """Pick the done() JSON line out of wrk's output."""
    for line in stdout.splitlines():
        if line.startswith(MARK):
            d = json.loads(line[len(MARK):])
            errs = {k[4:]: v for k, v in d.items() if k.startswith("err_") and v}
            return WrkResult(d["requests"], d["bytes"], d["duration_us"] / 1e6,
                             d["p50_us"] / 1000, d["p99_us"] / 1000, errs)
    raise RuntimeError(f"wrk printed no result line:\n{stdout[-2000:]}")


def wrk(url: str, conns: int, duration: float, script: Path, threads: int = 1,
        timeout_s: float = 10.0) -> WrkResult:
    """Run wrk for `duration` seconds; bounded by a hard timeout as well."""
    threads = max(1, min(threads, conns))
    seconds = max(1, round(duration))  # wrk takes whole seconds only
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s",
            f"--timeout={timeout_s:g}s", "-s", str(script), url]
    out = subprocess.run(argv, check=False, capture_output=True, text=True,
                         timeout=seconds + timeout_s + 30)
    if out.returncode != 0:
        msg = (out.stderr.strip() or out.stdout.strip())[-800:]
        raise RuntimeError(f"wrk failed ({out.returncode}): {msg}")
    return parse(out.stdout)
