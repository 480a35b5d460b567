"""The performance targets, each checked against the rows of this run.

A check returns (goal, verdict, figures): verdict is PASS, FAIL, or n/a when a row it
needs was not measured (filtered out with --only, or failed; the figures say which) or
was measured too briefly to judge.
"""
from __future__ import annotations

from collections.abc import Callable

from bench.scenarios_recording import MIN_ROUNDS

Rows = list[dict]


def _find(rows: Rows, scenario: str, target: str, **cell) -> dict | None:
    for r in rows:
        if r["scenario"] == scenario and r["target"] == target and all(
                r.get(k) == v for k, v in cell.items()):
            return r
    return None


def _ratio_goal(rows: Rows, goal: str, target: str, anchor: str, key: str,
                minimum: float, body: str = "64B", conns: int = 50) -> tuple:
    a = _find(rows, "http", target, body=body, conns=conns)
    b = _find(rows, "http", anchor, body=body, conns=conns)
    if not (a and b and a.get(key) and b.get(key)):
        return goal, "n/a", f"needs http/{target} and http/{anchor} at {body}, {conns} conns"
    ratio = a[key] / b[key]
    verdict = "PASS" if ratio >= minimum else "FAIL"
    return goal, verdict, f"{a[key]:,.0f} vs {b[key]:,.0f} req/s = {ratio:.2f}×"


def reverse_vs_nginx(rows: Rows) -> tuple:
    return _ratio_goal(rows, "fastproxy reverse ≥ 0.5× nginx req/s (64 B, 50 conns)",
                       "fastproxy", "nginx", "rps", 0.5)


def addon_vs_nginx(rows: Rows) -> tuple:
    return _ratio_goal(rows, "fastproxy + no-op addon ≥ 0.25× nginx req/s (64 B, 50 conns)",
                       "fastproxy-addon", "nginx", "rps", 0.25)


def big_bodies_vs_nginx(rows: Rows) -> tuple:
    return _ratio_goal(rows, "fastproxy reverse ≥ 0.7× nginx req/s with 1 MiB bodies (50 conns)",
                       "fastproxy", "nginx", "rps", 0.7, body="1MiB")


def vs_mitmdump_everywhere(rows: Rows) -> tuple:
    goal = "fastproxy reverse ≥ 20× mitmdump req/s in every body × conns cell"
    worst = None
    for r in rows:
        if (r["scenario"] == "http" and r["target"] == "fastproxy" and r.get("x_mitmdump")
                and (worst is None or r["x_mitmdump"] < worst["x_mitmdump"])):
            worst = r
    if worst is None:
        return goal, "n/a", "needs http/fastproxy and http/mitmdump"
    cells = sum(1 for r in rows if r["scenario"] == "http" and r["target"] == "fastproxy"
                and r.get("x_mitmdump"))
    verdict = "PASS" if worst["x_mitmdump"] >= 20 else "FAIL"
    return goal, verdict, (f"lowest {worst['x_mitmdump']:.1f}× at {worst['body']}, "
                           f"{worst['conns']} conns ({cells} cells)")


def cpu_vs_nginx(rows: Rows) -> tuple:
    goal = "fastproxy CPU per request ≤ 3× nginx's (64 B, 50 conns)"
    a = _find(rows, "http", "fastproxy", body="64B", conns=50)
    b = _find(rows, "http", "nginx", body="64B", conns=50)
    if not (a and b and a.get("cpu_us_per_req") and b.get("cpu_us_per_req")):
        return goal, "n/a", "needs http/fastproxy and http/nginx at 64B, 50 conns"
    ratio = a["cpu_us_per_req"] / b["cpu_us_per_req"]
    return goal, "PASS" if ratio <= 3 else "FAIL", (
        f"{a['cpu_us_per_req']:.1f} vs {b['cpu_us_per_req']:.1f} µs/req = {ratio:.2f}×")


def tunnel_vs_direct(rows: Rows) -> tuple:
    goal = "CONNECT tunnel ≥ 0.7× direct MB/s (1 GiB)"
    a = _find(rows, "tunnel", "fastproxy")
    b = _find(rows, "tunnel", "direct")
    if not (a and b and a.get("mbps") and b.get("mbps")):
        return goal, "n/a", "needs tunnel/fastproxy and tunnel/direct"
    ratio = a["mbps"] / b["mbps"]
    figures = f"{a['mbps']:,.0f} vs {b['mbps']:,.0f} MB/s = {ratio:.2f}×"
    # Context only, not part of the verdict: what nginx's stream module (a C relay, no
    # CONNECT) reaches in the same run, with the same sender and sink sharing the cores.
    c = _find(rows, "tunnel", "nginx-stream")
    if c and c.get("mbps"):
        figures += f"; C relay on this machine: {c['mbps'] / b['mbps']:.2f}× (nginx stream)"
    return goal, "PASS" if ratio >= 0.7 else "FAIL", figures


def idle_memory(rows: Rows) -> tuple:
    goal = "10,000 idle client connections ≤ 10 KiB each"
    a = _find(rows, "idle", "fastproxy")
    if not (a and a.get("bytes_per_conn") is not None):
        return goal, "n/a", "needs idle/fastproxy"
    per = a["bytes_per_conn"]
    verdict = "PASS" if per <= 10 * 1024 and a["opened"] == a["conns"] else "FAIL"
    return goal, verdict, (f"{per:,.0f} bytes/conn ({per / 1024:.1f} KiB) with "
                           f"{a['opened']:,} of {a['conns']:,} held")


def recording_vs_plain(rows: Rows) -> tuple:
    goal = "with -w, ≥ 0.85× the req/s without (64 B, 50 conns), nothing lost"
    a = _find(rows, "recording", "fastproxy-w")
    if not (a and a.get("x_plain") and a.get("recorded_ratio") is not None):
        return goal, "n/a", "needs recording/fastproxy-w and recording/fastproxy-plain"
    if len(a["x_plain_pairs"]) < MIN_ROUNDS:
        return goal, "n/a", (f"{a['x_plain']:.2f}× from {len(a['x_plain_pairs'])} rounds; "
                             f"a verdict needs {MIN_ROUNDS}")
    verdict = "PASS" if a["x_plain"] >= 0.85 and a["recorded_ratio"] == 1.0 else "FAIL"
    return goal, verdict, (f"{a['x_plain']:.2f}× (95% {a['x_plain_interval']}, "
                           f"{len(a['x_plain_pairs'])} rounds), "
                           f"{a['flows_per_s']:,.0f} flows recorded/s, "
                           f"recorded/served {a['recorded_ratio']:.3f}")


GOALS: list[Callable[[Rows], tuple]] = [
    reverse_vs_nginx, addon_vs_nginx, vs_mitmdump_everywhere, big_bodies_vs_nginx,
    tunnel_vs_direct, cpu_vs_nginx, idle_memory, recording_vs_plain,
]


def check_all(rows: Rows) -> list[dict]:
    out = []
    for g in GOALS:
        goal, verdict, figures = g(rows)
        out.append({"goal": goal, "verdict": verdict, "figures": figures})
    return out
