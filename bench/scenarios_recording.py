"""Recording with -w: what it costs, in one run.

The small-response wrk cell (64 B, 50 connections, reverse mode) through fastproxy
without -w and with -w; plus, for reference, the same with a no-op request/response addon
(the flow path recording has to take). Reports req/s, the ratio to the no -w row (the goal:
>= 0.85) with its 95% interval, flows recorded per second (flows in the file over the
measured seconds) and whether every served request was recorded.

The load on this kind of machine moves by a third within seconds, so the variants run side
by side: one proxy each, started once, then short wrk runs (`SLICE` seconds) in turns, in
reverse order every other round (plain, -w, addon; then addon, -w, plain). The ratio is the
median over the rounds of each run's ratio to the plain run next to it; its interval is a
bootstrap over the rounds. The ratio of the median req/s is printed too. The recording
proxy writes one file all along, as a user's would, so the cost of the file growing past
what the page cache holds unwritten (writeback to disk) is in the figure.

Standalone: `.venv/bin/python -m bench.scenarios_recording [--duration S] [--repeats N]`
(each variant gets S × N seconds of load, in slices).
"""
from __future__ import annotations

import argparse
import random
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
    Column("95% interval", "x_plain_interval", "{}"),
    Column("flows recorded/s", "flows_per_s"),
    Column("recorded/served", "recorded_ratio", "{:.3f}"),
    Column("CPU µs/req (proxy tree)", "cpu_us_per_req", "{:.1f}"),
    Column("errors", "errors", "{:,}"),
]

BODY, CONNS = "64B", 50
SLICE = 2.0
"""Seconds per wrk run: short, so that the runs compared are close in time."""
MIN_ROUNDS = 5
"""Rounds run however short the run (`--quick`), and needed for the goal's verdict: one
pair says nothing on a machine this noisy."""


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


class _Proxy:
    """One variant's proxy, started once and loaded in turns."""

    def __init__(self, ctx: Context, extra: list[str]) -> None:
        path, size = BODIES[BODY]
        origin = ctx.origin.port
        port = free_port()
        self.server = fastproxy(port, f"reverse:http://127.0.0.1:{origin}", *extra).start()
        self.script = lua_script(None, f"127.0.0.1:{origin}")
        self.url = f"http://127.0.0.1:{port}{path}"
        try:
            check_get(port, path, f"127.0.0.1:{origin}", size)
            if ctx.warmup > 0:
                self.load(ctx, ctx.warmup)
        except BaseException:
            self.server.stop()
            raise

    def load(self, ctx: Context, seconds: float) -> dict:
        with Sampler(self.server.pid) as s:
            r = wrk(self.url, CONNS, seconds, self.script, ctx.wrk_threads)
        return run_record(r, s)


@scenario("recording", "Recording with -w: 64 B GET, 50 conns, reverse mode (runs in turns)",
          COLUMNS, order=60)
def recording(ctx: Context) -> list[dict]:
    variants = [v for v in _variants(ctx) if ctx.wanted("recording", f"fastproxy-{v[0]}")]
    seconds = min(ctx.duration, SLICE)
    rounds = max(MIN_ROUNDS, ctx.repeats, round(ctx.repeats * ctx.duration / seconds))
    runs: dict[str, list[dict | None]] = {name: [] for name, _, _ in variants}
    rec = WORK / "recording.flows"
    rec.unlink(missing_ok=True)
    proxies: dict[str, _Proxy] = {}
    failed: dict[str, str] = {}  # a variant whose proxy won't start is a row with its error
    try:
        for name, _, extra in variants:
            try:
                proxies[name] = _Proxy(ctx, extra)
            except Exception as e:  # noqa: BLE001
                log(f"recording/{name}: FAILED: {e}")
                failed[name] = str(e)
        for round_ in range(rounds if proxies else 0):
            for name, _, _ in (variants if round_ % 2 == 0 else variants[::-1]):
                if name in failed:
                    runs[name].append(None)
                    continue
                try:
                    run = proxies[name].load(ctx, seconds)
                except Exception as e:  # noqa: BLE001 - a failed run is a row note
                    log(f"recording/{name}: FAILED: {e}")
                    run = None  # keeps the runs of a round at one index
                runs[name].append(run)
            log(f"recording round {round_ + 1}/{rounds}: " + ", ".join(
                f"{n} {r[-1]['rps']:,.0f}" for n, r in runs.items() if r[-1]) + " req/s")
    finally:
        for proxy in proxies.values():
            proxy.server.stop()  # the recorder writes all it has before exit
    rows = []
    for name, label, _ in variants:
        done = [r for r in runs[name] if r is not None]
        row = {"scenario": "recording", "target": f"fastproxy-{name}", "label": label,
               "body": BODY, "conns": CONNS, "runs": done, "slice_s": seconds}
        if name in failed:
            row["error"] = failed[name]
        if done:
            for key in ("rps", "cpu_us_per_req", "p99_ms"):
                row[key] = median([r[key] for r in done])
            row["errors"] = sum(r["errors"] for r in done)
        if name != "plain" and done and "plain" in runs:
            _add_ratios(row, runs[name], runs["plain"])
        rows.append(row)
    w = next((r for r in rows if r["target"] == "fastproxy-w"), None)
    if w is not None and w["runs"]:
        _add_recorded(w, _count_flows(rec), ctx.warmup)
    rec.unlink(missing_ok=True)
    return rows


def _add_recorded(row: dict, flows: int, warmup: float) -> None:
    """Flows recorded per second of load, and recorded/served: the runs' requests (the
    warm-up's and the check's are served too but not counted, so ≥ 1 is capped)."""
    served = sum(r["requests"] for r in row["runs"])
    seconds = sum(r["duration_s"] for r in row["runs"]) + warmup
    row["flows_recorded"] = flows
    row["flows_per_s"] = flows / seconds
    row["recorded_ratio"] = min(flows / served, 1.0) if served else 0.0


def _add_ratios(row: dict, runs: list, plain: list) -> None:
    """``x_plain``: the median of each round's ratio to its plain run, with a 95%
    bootstrap interval; the ratios; and the ratio of the median req/s."""
    pairs = [r["rps"] / p["rps"] for r, p in zip(runs, plain)
             if r is not None and p is not None and p["rps"]]
    plain_rps = [p["rps"] for p in plain if p is not None]
    if pairs:
        row["x_plain"] = median(pairs)
        row["x_plain_pairs"] = pairs
        row["x_plain_of_medians"] = row["rps"] / median(plain_rps)
        low, high = bootstrap_interval(pairs)
        row["x_plain_interval"] = f"{low:.2f}–{high:.2f}"


def bootstrap_interval(values: list[float], draws: int = 2000,
                       level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` of the medians of ``draws`` resamples of ``values`` (seeded:
    the same runs give the same interval)."""
    rng = random.Random(0)
    medians = sorted(median(rng.choices(values, k=len(values))) for _ in range(draws))
    cut = int(draws * (1 - level) / 2)
    return medians[cut], medians[draws - 1 - cut]


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
            extra += (f"  ×no-w {r['x_plain']:.2f}, 95% {r['x_plain_interval']} (pairs "
                      f"{pairs}; of the medians {r['x_plain_of_medians']:.2f})")
        if r.get("flows_per_s"):
            extra += f"  flows/s {r['flows_per_s']:,.0f}  recorded/served {r['recorded_ratio']:.3f}"
        if r.get("error"):
            extra += f"  FAILED: {r['error']}"
        runs = [round(x["rps"]) for x in r["runs"]]
        print(f"{r['label']:55} {r.get('rps') or 0:9,.0f} req/s  "
              f"cpu {r.get('cpu_us_per_req') or 0:6.1f} µs/req{extra}  runs={runs}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
