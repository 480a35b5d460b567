"""`make bench`: the whole comparison in one go, one Markdown report, JSON in bench/results/.

    .venv/bin/python bench/run.py                 # full: 10 s × 3 per cell (~30 min)
    .venv/bin/python bench/run.py --quick         # 2 s × 1, for development (~4 min)
    .venv/bin/python bench/run.py --only nginx,direct --only 'tunnel/*'
    make bench ARGS="--quick --only http"

It installs what it lacks (wrk, nginx-light, nghttp2-client, libnginx-mod-stream with apt-get;
mitmproxy in bench/.venv-peers), starts every server itself on 127.0.0.1 and stops them all on exit.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Importing a scenario module registers its scenario.
from bench import idle, scenarios_recording, scenarios_ws_tcp, tunnel  # noqa: F401
from bench import scenarios_tls  # noqa: F401
from bench.goals import check_all
from bench.origin import BODIES, origin
from bench.peers import ensure_mitmdump
from bench.proc import (
    ROOT,
    WORK,
    busy_cores,
    ensure_tools,
    install_cleanup,
    log,
    raise_nofile,
    stop_all,
)
from bench.report import environment, markdown, save
from bench.scenarios import Context, in_order
from bench.targets import add_baseline, fastproxy_ready


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/run.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 s × 1 repeat (development)")
    ap.add_argument("--duration", type=float, help="seconds per wrk run (default 10)")
    ap.add_argument("--repeats", type=int, help="runs per cell, median reported (default 3)")
    ap.add_argument("--warmup", type=float, help="unmeasured wrk seconds per cell (default 1)")
    ap.add_argument("--only", action="append", default=[], metavar="PATTERN",
                    help="scenario, target or scenario/target, or a glob on any of them "
                         "(comma-separated, repeatable): http, nginx, 'fastproxy*', "
                         "tunnel/direct; --list shows the names")
    ap.add_argument("--bodies", default=",".join(BODIES), help="subset of %(default)s")
    ap.add_argument("--conns", default="50,1", help="connection counts (default 50,1)")
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--list", action="store_true", help="list scenarios and targets")
    ap.add_argument("--baseline", metavar="REF",
                    help="also measure the commit REF (built in bench/.work/baseline) as the "
                         "http rows fastproxy-base and fastproxy-regular-base, interleaved "
                         "with this build's: before/after figures from one run")
    a = ap.parse_args(argv)
    a.duration = a.duration or (2.0 if a.quick else 10.0)
    a.repeats = a.repeats or 1 if a.quick else a.repeats or 3
    a.warmup = a.warmup if a.warmup is not None else 1.0
    a.only = [p.strip() for item in a.only for p in item.split(",") if p.strip()]
    return a


def build_baseline(ref: str) -> Path:
    """The tree of commit `ref` in bench/.work/baseline, its extensions built in place
    with this virtualenv's Python."""
    dest = WORK / "baseline"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=dest,
                   check=True, capture_output=True)
    log(f"baseline {ref} built in {dest}")
    return dest


def list_all() -> None:
    from bench.targets import HTTP_TARGETS
    for sc in in_order():
        print(f"{sc.name}: {sc.title}")
    print("http targets: " + ", ".join(HTTP_TARGETS))
    print("tunnel targets: " + ", ".join(tunnel.TUNNEL_TARGETS))
    print("idle targets: " + ", ".join(idle.IDLE_TARGETS) + " (mitmdump only with --only idle/mitmdump)")


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.list:
        list_all()
        return 0
    t0 = time.monotonic()
    install_cleanup()
    raise_nofile()
    shutil.rmtree(WORK / "logs", ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    ensure_tools()
    busy = busy_cores()
    if busy > 0.25:
        log(f"warning: the machine is busy ({busy:.1f} cores in use before the bench started); "
            "figures will be noisy")
    ensure_mitmdump()
    if a.baseline:
        add_baseline(build_baseline(a.baseline), a.baseline)
    ok, why = fastproxy_ready()
    if not ok:
        log(f"fastproxy CLI not usable, its rows are skipped: {why}")
    bodies = [b for b in a.bodies.split(",") if b]
    unknown = set(bodies) - set(BODIES)
    if unknown:
        raise SystemExit(f"unknown bodies {unknown}; known: {list(BODIES)}")
    config = {"duration": a.duration, "repeats": a.repeats, "warmup": a.warmup,
              "only": a.only, "bodies": bodies, "wrk_threads": a.wrk_threads,
              "fastproxy_usable": ok, "busy_cores_at_start": round(busy, 2)}
    results: dict[str, list[dict]] = {}
    try:
        with origin() as org:
            ctx = Context(org, a.duration, a.repeats, a.warmup, a.only, bodies,
                          [int(c) for c in a.conns.split(",")], a.wrk_threads, ok)
            for sc in in_order():
                log(f"scenario {sc.name}")
                results[sc.name] = sc.run(ctx)
    finally:
        stop_all()
    rows = [r for rs in results.values() for r in rs]
    goals = check_all(rows)
    env = environment({**config, "elapsed_s": round(time.monotonic() - t0)})
    text = markdown(env, results, goals)
    print(text)
    path = save(env, results, goals, text)
    log(f"done in {time.monotonic() - t0:.0f} s; results in {path} (and latest.md/.json)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
