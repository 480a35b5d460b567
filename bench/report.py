"""The Markdown report (printed) and the JSON record (bench/results/)."""
from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path

from bench.proc import BENCH, ROOT, which
from bench.scenarios import SCENARIOS, Scenario

RESULTS = BENCH / "results"


def _cell(row: dict, key: str, fmt: str) -> str:
    v = row.get(key)
    if v is None or v == "":
        return "—"
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def table(sc: Scenario, rows: list[dict]) -> str:
    cols = sc.columns
    lines = ["| " + " | ".join(c.header for c in cols) + " |",
             "|" + "|".join("---" if c.fmt == "{}" else "---:" for c in cols) + "|"]
    notes = []
    for r in rows:
        if r.get("error"):
            where = " ".join(str(r[k]) for k in ("target", "body") if r.get(k))
            if r.get("scenario") == "http":
                where += f" {r['conns']} conns"
            notes.append(f"- {where}: FAILED: {r['error'][:300]}")
        lines.append("| " + " | ".join(_cell(r, c.key, c.fmt) for c in cols) + " |")
    return "\n".join(lines + ([""] + notes if notes else []))


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def environment(config: dict) -> dict:
    from bench.peers import MITMDUMP, mitmdump_version
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), "?")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "commit": _version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "cpu": cpu, "cores": len(__import__("os").sched_getaffinity(0)),
        "kernel": platform.release(), "python": platform.python_version(),
        "wrk": " ".join(_version([which("wrk") or "wrk", "--version"]).split()[:2]),
        "nginx": _version([which("nginx") or "nginx", "-v"]).split()[-1],
        "mitmproxy": mitmdump_version() if MITMDUMP.exists() else "not installed",
        **config,
    }


def markdown(env: dict, results: dict[str, list[dict]], goals: list[dict]) -> str:
    out = ["# fastproxy benchmark", "",
           (f"{env['date']} · commit {env['commit']} · {env['cores']} cores ({env['cpu']}) · "
            f"Linux {env['kernel']} · Python {env['python']} · {env['wrk']} · {env['nginx']} · "
            f"mitmproxy {env['mitmproxy']}"),
           "",
           (f"Each cell: wrk for {env['duration']:g} s × {env['repeats']} "
           f"(median), after {env['warmup']:g} s warm-up; wrk, the origin (nginx, 1 worker) "
           "and the proxy share the machine. "
           "MB = 10⁶ bytes of response incl. headers. CPU and RSS are the proxy's whole "
           "process tree (/proc: utime+stime incl. reaped children; peak RSS sampled every "
           "0.1 s). × columns: req/s over the same cell's direct / nginx / mitmdump row.")]
    if env.get("busy_cores_at_start", 0) > 0.25:
        out.append(f"**Warning:** {env['busy_cores_at_start']:.1f} cores were already busy "
                   "when the run started; other load skews these figures.")
    for name, rows in results.items():  # already in report order
        if rows:
            out += ["", f"## {SCENARIOS[name].title}", "", table(SCENARIOS[name], rows)]
    if goals:
        out += ["", "## Targets", ""]
        out += [f"- **{g['verdict']}** {g['goal']}: {g['figures']}" for g in goals]
    return "\n".join(out) + "\n"


def save(env: dict, results: dict, goals: list[dict], text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"bench-{stamp}.json"
    data = {"environment": env, "results": results, "targets": goals}
    path.write_text(json.dumps(data, indent=1, default=str))
    (RESULTS / f"bench-{stamp}.md").write_text(text)
    for ext, body in (("json", path.read_text()), ("md", text)):
        (RESULTS / f"latest.{ext}").write_text(body)
    return path
