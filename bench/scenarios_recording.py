"""Recording with -w: what it costs, in one run.

The small-response wrk cell (64 B, 50 connections, reverse mode) through fastproxy
without -w and with -w, the two alternating for each repeat so that a busy machine hurts
both alike; plus, for reference, the same with a no-op request/response addon (the flow
path recording has to take). Reports req/s, the ratio to the no -w row (the goal: >= 0.85),
flows recorded per second (flows in the file over the measured seconds) and whether every
served request was recorded.

Standalone: `.venv/bin/python -m bench.scenarios_recording [--duration S] [--repeats N]`.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from bench.load import lua_script, wrk
from bench.origin import BODIES
from bench.proc import WORK, free_port, log
from bench.procstat import Sampler
from bench.scenarios import Column, Context, check_get, median, run_record, scenario
from bench.targets import NOOP_ADDON, fastproxy

COLUMNS = [
    Column("target", "label", "{}"),
    Column("req/s", "rps"),
    Column("× no -w", "x_plain", "{:.2f}"),
    Column("flows recorded/s", "flows_per_s"),
    Column("recorded/served", "recorded_ratio", "{:.3f}"),
    Column("CPU µs/req (proxy tree)", "cpu_us_per_req", "{:.1f}"),
    Column("errors", "errors", "{:,}"),
]

BODY, CONNS = "64B", 50


def _count_flows(path: Path) -> int:
    from fastproxy.io.flowfile import FlowReader
    if not path.exists():
        return 0
    with warnings.catch_warnings(), open(path, "rb") as fo:
        warnings.simplefilter("ignore")
        return sum(1 for _ in FlowReader(fo).states())


def _variants(ctx: Context) -> list[tuple[str, str, list[str]]]:
    rec = WORK / "recording.flows"
    return [("plain", "fastproxy reverse", []),
            ("w", "fastproxy reverse -w FILE", ["-w", str(rec)]),
            ("noop", "fastproxy reverse + no-op addon (flow path, no -w)", ["-s", NOOP_ADDON])]


def _one(ctx: Context, extra: list[str]) -> dict:
    """Start the proxy, check it, warm it up, run wrk once; stop it."""
    path, size = BODIES[BODY]
    origin = ctx.origin.port
    port = free_port()
    srv = fastproxy(port, f"reverse:http://127.0.0.1:{origin}", *extra).start()
    script = lua_script(None, f"127.0.0.1:{origin}")
    url = f"http://127.0.0.1:{port}{path}"
    try:
        check_get(port, path, f"127.0.0.1:{origin}", size)
        if ctx.warmup > 0:
            wrk(url, CONNS, ctx.warmup, script, ctx.wrk_threads)
        with Sampler(srv.pid) as s:
            r = wrk(url, CONNS, ctx.duration, script, ctx.wrk_threads)
        return run_record(r, s)
    finally:
        srv.stop()


@scenario("recording", "Recording with -w: 64 B GET, 50 conns, reverse mode (alternating runs)",
          COLUMNS, order=60)
def recording(ctx: Context) -> list[dict]:
    variants = [v for v in _variants(ctx) if ctx.wanted("recording", f"fastproxy-{v[0]}")]
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in variants}
    recorded: list[tuple[int, int, float]] = []  # (flows, requests served, seconds)
    for _ in range(ctx.repeats):
        for name, _, extra in variants:
            rec = Path(extra[1]) if name == "w" else None
            if rec is not None and rec.exists():
                rec.unlink()
            try:
                run = _one(ctx, extra)
            except Exception as e:  # noqa: BLE001 - a failed run is a row note, not a crash
                log(f"recording/{name}: FAILED: {e}")
                continue
            runs[name].append(run)
            if rec is not None:
                flows = _count_flows(rec)
                # served = the measured run + warm-up and check (not counted by wrk): >=
                recorded.append((flows, run["requests"], run["duration_s"] + ctx.warmup))
                rec.unlink(missing_ok=True)
            log(f"recording/{name}: {run['rps']:,.0f} req/s")
    rows = []
    for name, label, _ in variants:
        row = {"scenario": "recording", "target": f"fastproxy-{name}", "label": label,
               "body": BODY, "conns": CONNS, "runs": runs[name]}
        if runs[name]:
            for key in ("rps", "cpu_us_per_req", "p99_ms"):
                row[key] = median([r[key] for r in runs[name]])
            row["errors"] = sum(r["errors"] for r in runs[name])
        rows.append(row)
    plain = next((r for r in rows if r["target"] == "fastproxy-plain"), None)
    for row in rows:
        if plain and plain.get("rps") and row.get("rps") and row is not plain:
            row["x_plain"] = row["rps"] / plain["rps"]
    w = next((r for r in rows if r["target"] == "fastproxy-w"), None)
    if w is not None and recorded:
        w["flows_per_s"] = median([f / s for f, _, s in recorded])
        w["recorded_ratio"] = median([min(f / n, 1.0) if n else 0 for f, n, _ in recorded])
        w["flows_recorded"] = [f for f, _, _ in recorded]
    return rows


def main(argv: list[str] | None = None) -> int:
    from bench.origin import origin
    from bench.proc import ensure_tools, raise_nofile, stop_all
    ap = argparse.ArgumentParser(prog="bench.scenarios_recording")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=1.0)
    a = ap.parse_args(argv)
    raise_nofile()
    WORK.mkdir(parents=True, exist_ok=True)
    ensure_tools()
    try:
        with origin() as org:
            ctx = Context(org, a.duration, a.repeats, a.warmup, [], [BODY], [CONNS])
            rows = recording(ctx)
    finally:
        stop_all()
    for r in rows:
        extra = ""
        if r.get("x_plain"):
            extra += f"  ×no-w {r['x_plain']:.2f}"
        if r.get("flows_per_s"):
            extra += f"  flows/s {r['flows_per_s']:,.0f}  recorded/served {r['recorded_ratio']:.3f}"
        print(f"{r['label']:55} {r.get('rps') or 0:9,.0f} req/s  "
              f"cpu {r.get('cpu_us_per_req') or 0:6.1f} µs/req{extra}  runs={[round(x['rps']) for x in r['runs']]}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
