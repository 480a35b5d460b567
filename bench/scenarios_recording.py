"""Recording with -w: what it costs, in one run.

The small-response wrk cell (64 B, 50 connections, reverse mode) through fastproxy
without -w and with -w; plus, for reference, the same with a no-op request/response addon
(the flow path recording has to take). Reports req/s, the ratio to the no -w row (the goal:
>= 0.85), flows recorded per second (flows in the file over the measured seconds) and
whether every served request was recorded.

The load on this kind of machine drifts by a third within minutes, so each repeat runs the
variants back to back, in reverse order every other repeat (plain, -w, addon; then addon,
-w, plain), and the ratio is the median over the repeats of each one's ratio to the plain
run next to it. The ratio of the median req/s is printed too.

Standalone: `.venv/bin/python -m bench.scenarios_recording [--duration S] [--repeats N]`.
"""
from __future__ import annotations

import argparse
import sys
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
    """The complete records in ``path``, walked by their length prefixes (reading them
    took longer than the runs; the tests check what the records hold)."""
    from fastproxy.io.tnetstring import skip_record
    if not path.exists():
        return 0
    count = 0
    with open(path, "rb") as fo:
        try:
            while skip_record(fo):
                count += 1
        except ValueError:
            pass  # a torn last record is not a flow
    return count


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
    for repeat in range(ctx.repeats):
        for name, _, extra in (variants if repeat % 2 == 0 else variants[::-1]):
            rec = Path(extra[1]) if name == "w" else None
            if rec is not None and rec.exists():
                rec.unlink()
            try:
                run = _one(ctx, extra)
            except Exception as e:  # noqa: BLE001 - a failed run is a row note, not a crash
                log(f"recording/{name}: FAILED: {e}")
                runs[name].append(None)  # keeps the runs of a repeat at one index
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
        done = [r for r in runs[name] if r is not None]
        row = {"scenario": "recording", "target": f"fastproxy-{name}", "label": label,
               "body": BODY, "conns": CONNS, "runs": done}
        if done:
            for key in ("rps", "cpu_us_per_req", "p99_ms"):
                row[key] = median([r[key] for r in done])
            row["errors"] = sum(r["errors"] for r in done)
        if name != "plain" and done and "plain" in runs:
            _add_ratios(row, runs[name], runs["plain"])
        rows.append(row)
    w = next((r for r in rows if r["target"] == "fastproxy-w"), None)
    if w is not None and recorded:
        w["flows_per_s"] = median([f / s for f, _, s in recorded])
        w["recorded_ratio"] = median([min(f / n, 1.0) if n else 0 for f, n, _ in recorded])
        w["flows_recorded"] = [f for f, _, _ in recorded]
    return rows


def _add_ratios(row: dict, runs: list, plain: list) -> None:
    """``x_plain``: the median of each repeat's ratio to its plain run; the ratios; and
    the ratio of the median req/s."""
    pairs = [r["rps"] / p["rps"] for r, p in zip(runs, plain)
             if r is not None and p is not None and p["rps"]]
    plain_rps = [p["rps"] for p in plain if p is not None]
    if pairs:
        row["x_plain"] = median(pairs)
        row["x_plain_pairs"] = pairs
        row["x_plain_of_medians"] = row["rps"] / median(plain_rps)


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
            pairs = ", ".join(f"{x:.2f}" for x in r["x_plain_pairs"])
            extra += (f"  ×no-w {r['x_plain']:.2f} (pairs {pairs}; of the medians "
                      f"{r['x_plain_of_medians']:.2f})")
        if r.get("flows_per_s"):
            extra += f"  flows/s {r['flows_per_s']:,.0f}  recorded/served {r['recorded_ratio']:.3f}"
        print(f"{r['label']:55} {r.get('rps') or 0:9,.0f} req/s  "
              f"cpu {r.get('cpu_us_per_req') or 0:6.1f} µs/req{extra}  runs={[round(x['rps']) for x in r['runs']]}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
