"""The scenario registry and the HTTP request/response matrix.

A scenario is a function `(ctx) -> list[dict]` registered with `@scenario(...)`, plus the
columns its table shows. Each row it returns is one line of that table and one JSON
record; `ctx.wanted(scenario, target)` applies `--only`. Later scenarios (TLS-intercepted
req/s, h2load through the proxy, TCP relay, WebSocket msgs/s, recording with -w) register
the same way, in their own module imported by run.py.
"""
from __future__ import annotations

import fnmatch
import http.client
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.load import lua_script, wrk
from bench.origin import BODIES
from bench.proc import Server, ServerError, free_port, log
from bench.procstat import Sampler
from bench.targets import HTTP_TARGETS, Target


@dataclass
class Context:
    """What every scenario gets: the running origin and the run's settings."""

    origin: Server
    duration: float
    repeats: int
    warmup: float
    only: list[str]
    bodies: list[str]
    conns: list[int]
    wrk_threads: int = 1
    fastproxy_ok: bool = True

    def wanted(self, scenario: str, target: str, opt_in: bool = False) -> bool:
        """--only applies; an `opt_in` pair (slow, informative) runs only when named."""
        key = f"{scenario}/{target}"
        if target.startswith("fastproxy") and not self.fastproxy_ok:
            return False
        if opt_in:
            return key in self.only
        return not self.only or any(_match(p, key) for p in self.only)


def _match(pattern: str, key: str) -> bool:
    """`pattern` names the scenario, the target or both ("http", "nginx", "http/nginx");
    a glob matches either part or the whole ("fastproxy*", "http/*", "*/mitmdump")."""
    parts = [key, *key.split("/")]
    if any(c in pattern for c in "*?["):
        return any(fnmatch.fnmatchcase(p, pattern) for p in parts)
    return pattern in parts


@dataclass(frozen=True)
class Column:
    header: str
    key: str
    fmt: str = "{:,.0f}"


@dataclass
class Scenario:
    name: str
    title: str
    run: Callable[[Context], list[dict]]
    columns: list[Column] = field(default_factory=list)
    order: int = 100


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, title: str, columns: list[Column], order: int = 100):
    """Register `fn(ctx) -> rows` as scenario `name`; `order` places it in the report."""
    def register(fn: Callable[[Context], list[dict]]):
        SCENARIOS[name] = Scenario(name, title, fn, columns, order)
        return fn
    return register


def in_order() -> list[Scenario]:
    return sorted(SCENARIOS.values(), key=lambda sc: sc.order)


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def check_get(port: int, target: str, host: str, size: int) -> None:
    """One request before any load: fail clearly (status, size) rather than measure errors."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", target, skip_host=True)
        conn.putheader("Host", host)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200 or len(body) != size:
        raise ServerError(f"GET {target} -> {resp.status}, {len(body)} bytes (want 200, {size})")


def start_target(t: Target, origin_port: int) -> Server | None:
    if t.start is None:
        return None
    srv = t.start(free_port(), origin_port)
    return srv.start()


# --- the HTTP matrix ----------------------------------------------------------------------

RATIO_BASES = ("direct", "nginx", "mitmdump")

HTTP_COLUMNS = [
    Column("body", "body", "{}"), Column("conns", "conns", "{}"),
    Column("target", "label", "{}"),
    Column("req/s", "rps"), Column("MB/s", "mbps", "{:,.1f}"),
    Column("p50 ms", "p50_ms", "{:.2f}"), Column("p99 ms", "p99_ms", "{:.2f}"),
    Column("CPU µs/req", "cpu_us_per_req", "{:,.1f}"),
    Column("peak RSS MiB", "peak_rss_mib", "{:,.1f}"),
    Column("× direct", "x_direct", "{:.2f}×"), Column("× nginx", "x_nginx", "{:.2f}×"),
    Column("× mitmdump", "x_mitmdump", "{:.1f}×"),
    Column("errors", "errors", "{:,}"),
]


@scenario("http", "HTTP/1.1 GET through each target (wrk, keep-alive; medians of repeats)",
          HTTP_COLUMNS, order=10)
def http_matrix(ctx: Context) -> list[dict]:
    """All targets run at once (idle ones cost nothing) and the repeats of a cell go round
    the targets in turn, so a ratio compares runs minutes apart at most, not a whole run:
    background load that comes and goes skews both sides alike."""
    targets = [t for t in HTTP_TARGETS.values() if ctx.wanted("http", t.name)]
    servers: dict[str, Server | None] = {}
    failed: dict[str, str] = {}
    rows: list[dict] = []
    try:
        for t in targets:
            try:
                servers[t.name] = start_target(t, ctx.origin.port)
            except Exception as e:  # noqa: BLE001 - a target that won't start is a row
                log(f"http/{t.name}: FAILED to start: {e}")
                failed[t.name] = f"start: {e}"
        for body in ctx.bodies:
            for conns in ctx.conns:
                rows += http_cell(ctx, targets, servers, failed, body, conns)
    finally:
        for srv in servers.values():
            if srv:
                srv.stop()
    add_ratios(rows)
    return rows


@dataclass
class Load:
    """One target's wrk set-up in one cell, and its runs so far."""

    target: Target
    srv: Server | None
    url: str
    script: object
    runs: list = field(default_factory=list)
    error: str | None = None


def cell_row(t: Target, body: str, conns: int, **kw) -> dict:
    return {"scenario": "http", "target": t.name, "label": t.label, "family": t.family,
            "body": body, "conns": conns, **kw}


def prepare(ctx: Context, t: Target, srv: Server | None, body: str) -> Load:
    """Check one GET through the target, then build its wrk URL and script."""
    path, size = BODIES[body]
    host = f"127.0.0.1:{ctx.origin.port}"
    target = f"http://{host}{path}" if t.forward else path
    port = srv.port if srv else ctx.origin.port
    check_get(port, target, host, size)
    script = lua_script(target if t.forward else None, host)
    return Load(t, srv, f"http://127.0.0.1:{port}{path}", script)


def http_cell(ctx: Context, targets: list[Target], servers: dict, failed: dict, body: str,
              conns: int) -> list[dict]:
    loads: list[Load] = []
    rows = []
    for t in targets:
        if t.name in failed:
            rows.append(cell_row(t, body, conns, error=failed[t.name]))
            continue
        try:
            load = prepare(ctx, t, servers[t.name], body)
            if ctx.warmup > 0:
                wrk(load.url, conns, ctx.warmup, load.script, ctx.wrk_threads)
            loads.append(load)
        except Exception as e:  # noqa: BLE001
            rows.append(cell_row(t, body, conns, error=failure(t, servers[t.name], body,
                                                                conns, e)))
    for _ in range(ctx.repeats):
        for load in loads:
            if load.error is None:
                one_run(ctx, load, body, conns)
    rows += [summarise(load, body, conns) for load in loads]
    order = list(HTTP_TARGETS)
    return sorted(rows, key=lambda r: order.index(r["target"]))


def one_run(ctx: Context, load: Load, body: str, conns: int) -> None:
    try:
        with Sampler(load.srv.pid if load.srv else None) as s:
            r = wrk(load.url, conns, ctx.duration, load.script, ctx.wrk_threads)
        load.runs.append(run_record(r, s))
    except Exception as e:  # noqa: BLE001
        load.error = failure(load.target, load.srv, body, conns, e)


def failure(t: Target, srv: Server | None, body: str, conns: int, e: Exception) -> str:
    died = "" if srv is None or srv.alive() else f" (server died: {srv.log_tail(500)})"
    log(f"http/{t.name} {body} {conns}c: FAILED: {e}{died}")
    return f"{e}{died}"


def summarise(load: Load, body: str, conns: int) -> dict:
    t = load.target
    if load.error or not load.runs:
        return cell_row(t, body, conns, error=load.error or "no run", runs=load.runs)
    row = cell_row(t, body, conns, runs=load.runs)
    for key in ("rps", "mbps", "p50_ms", "p99_ms", "cpu_us_per_req", "peak_rss_mib"):
        row[key] = median([r[key] for r in load.runs])
    row["errors"] = sum(r["errors"] for r in load.runs)
    log(f"http/{t.name} {body} {conns}c: {row['rps']:,.0f} req/s, p99 {row['p99_ms']:.2f} ms")
    return row


def run_record(r, s: Sampler) -> dict:
    cpu_us = s.cpu_s * 1e6 / r.requests if s.cpu_s is not None and r.requests else None
    rss = s.peak_rss / 2**20 if s.peak_rss is not None else None
    return {"rps": r.rps, "mbps": r.mbps, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
            "requests": r.requests, "bytes": r.bytes, "duration_s": r.duration_s,
            "cpu_s": s.cpu_s, "cpu_us_per_req": cpu_us, "peak_rss_mib": rss,
            "errors": r.error_count, "error_kinds": r.errors}


def add_ratios(rows: list[dict]) -> None:
    """×direct, ×nginx, ×mitmdump: req/s over the same cell's anchor row."""
    base = {(r["target"], r["body"], r["conns"]): r.get("rps") for r in rows}
    for r in rows:
        for b in RATIO_BASES:
            ref = base.get((b, r["body"], r["conns"]))
            if r.get("rps") and ref and r["target"] != b:
                r[f"x_{b}"] = r["rps"] / ref
