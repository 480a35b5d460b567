"""Smoke tests for the benchmark harness (bench/): parsing, selection, targets, report,
/proc sampling, process cleanup and the tunnel sink. No wrk, nginx or proxy needed."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from bench import goals, idle, load, proc, procstat, report, tunnel  # noqa: F401 - registers
from bench.scenarios import SCENARIOS, Context, in_order


def test_parse_wrk_done_line():
    out = ("Running 1s test\n" + load.MARK + '{"requests":1000,"bytes":200000,'
           '"duration_us":2000000,"p50_us":250,"p99_us":1500,"max_us":9000,"err_connect":0,'
           '"err_read":3,"err_write":0,"err_status":0,"err_timeout":0}\n')
    r = load.parse(out)
    assert r.rps == 500 and r.mbps == 0.1 and r.p50_ms == 0.25 and r.p99_ms == 1.5
    assert r.errors == {"read": 3} and r.error_count == 3


def test_lua_script_absolute_form():
    text = load.lua_script("http://127.0.0.1:9/64b", "127.0.0.1:9").read_text()
    assert 'wrk.path = "http://127.0.0.1:9/64b"' in text and "done = function" in text


def _ctx(only):
    return Context(None, 1, 1, 0, only, ["64B"], [1])


def test_only_patterns():
    assert _ctx([]).wanted("http", "nginx")
    assert _ctx(["nginx"]).wanted("idle", "nginx")
    assert not _ctx(["nginx"]).wanted("http", "fastproxy")
    assert _ctx(["http/*"]).wanted("http", "fastproxy-addon")
    assert not _ctx(["http/*"]).wanted("tunnel", "direct")
    assert _ctx(["fastproxy*"]).wanted("idle", "fastproxy")
    assert _ctx(["fastproxy*"]).wanted("http", "fastproxy-w2")
    assert not _ctx(["fastproxy*"]).wanted("http", "nginx")
    assert not _ctx([]).wanted("idle", "mitmdump", opt_in=True)
    assert _ctx(["idle/mitmdump"]).wanted("idle", "mitmdump", opt_in=True)


def _http(target, rps, cpu, body="64B", conns=50, **kw):
    return {"scenario": "http", "target": target, "body": body, "conns": conns, "rps": rps,
            "cpu_us_per_req": cpu, **kw}


def test_goals_verdicts():
    rows = [_http("nginx", 40000, 10), _http("fastproxy", 24000, 25, x_mitmdump=30),
            _http("fastproxy-addon", 8000, 50),
            {"scenario": "tunnel", "target": "direct", "mbps": 3000},
            {"scenario": "tunnel", "target": "fastproxy", "mbps": 1500},
            {"scenario": "idle", "target": "fastproxy", "bytes_per_conn": 4000,
             "opened": 10000, "conns": 10000}]
    verdicts = {g["goal"].split(" ")[1]: g["verdict"] for g in goals.check_all(rows)}
    assert [g["verdict"] for g in goals.check_all(rows)] == [
        "PASS", "FAIL", "PASS", "n/a", "FAIL", "PASS", "PASS", "n/a"], verdicts


def _recording(x_plain, recorded_ratio, rounds=5):
    return {"scenario": "recording", "target": "fastproxy-w", "x_plain": x_plain,
            "x_plain_interval": "0.80–0.90", "x_plain_pairs": [x_plain] * rounds,
            "flows_per_s": 20000.0, "recorded_ratio": recorded_ratio}


def test_recording_goal_wants_the_ratio_and_every_flow():
    assert goals.recording_vs_plain([_recording(0.86, 1.0)])[1] == "PASS"
    assert goals.recording_vs_plain([_recording(0.84, 1.0)])[1] == "FAIL"
    assert goals.recording_vs_plain([_recording(0.90, 0.999)])[1] == "FAIL"
    assert "95% 0.80–0.90, 5 rounds" in goals.recording_vs_plain([_recording(0.86, 1.0)])[2]
    assert goals.recording_vs_plain([_recording(1.02, 1.0, rounds=1)])[1] == "n/a"


def test_report_renders_every_scenario():
    assert [sc.name for sc in in_order()][:3] == ["http", "tunnel", "idle"]
    row = _http("nginx", 1234, 10.0, label="nginx", p50_ms=0.5, error="boom")
    text = report.table(SCENARIOS["http"], [row])
    assert "| 64B | 50 | nginx | 1,234 |" in text
    assert "FAILED: boom" in text


def test_procstat_sees_this_process():
    pid = os.getpid()
    assert pid in procstat.tree_pids(pid)
    assert procstat.rss_bytes(pid) > 1 << 20 and procstat.cpu_seconds(pid) > 0
    with procstat.Sampler(pid, interval=0.01) as s:
        sum(range(10**6))
    assert s.cpu_s >= 0 and s.peak_rss > 0


def test_procstat_tree_holds_a_child_in_a_session_of_its_own():
    """The recorder's writer starts a session of its own: its CPU is the proxy's too."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             start_new_session=True)
    try:
        assert child.pid in procstat.tree_pids(os.getpid())
    finally:
        child.kill()
        child.wait()


def test_server_group_is_killed_and_tunnel_sink_counts():
    port = proc.free_port()
    sink = proc.Server("sink", [sys.executable, "-m", "bench.tunnel", "--sink", str(port)], port)
    with sink:
        pid = sink.pid
        sock = socket.create_connection(("127.0.0.1", port))
        assert tunnel.transfer(sock, 3 * tunnel.CHUNK + 5) > 0
    time.sleep(0.1)
    assert pid not in procstat.tree_pids(pid) or procstat._stat_fields(pid)[0] == "Z"


def test_recording_ratio_pairs_each_run_with_the_plain_run_beside_it():
    """The -w ratio is the median of per-repeat ratios; a failed run drops its pair only."""
    from bench.scenarios_recording import _add_ratios
    plain = [{"rps": 100.0}, {"rps": 50.0}, None, {"rps": 80.0}]
    w = [{"rps": 90.0}, {"rps": 40.0}, {"rps": 70.0}, {"rps": 76.0}]
    row = {"rps": 73.0}
    _add_ratios(row, w, plain)
    assert row["x_plain_pairs"] == [0.9, 0.8, 0.95]
    assert row["x_plain"] == 0.9
    assert row["x_plain_of_medians"] == 73.0 / 80.0
    assert row["x_plain_interval"] == "0.80–0.95"


def test_bootstrap_interval_holds_the_median_and_narrows_with_more_rounds():
    from bench.scenarios_recording import bootstrap_interval
    few = [0.70, 0.95, 0.80, 0.85, 0.75]
    many = few * 8
    low, high = bootstrap_interval(few)
    assert low <= 0.80 <= high
    many_low, many_high = bootstrap_interval(many)
    assert many_high - many_low < high - low
    assert bootstrap_interval(few) == (low, high)  # seeded: the same runs, the same interval


def test_recorded_ratio_counts_the_runs_requests_and_caps_at_one():
    from bench.scenarios_recording import _add_recorded
    row = {"runs": [{"requests": 1000, "duration_s": 2.0}, {"requests": 900, "duration_s": 2.0}]}
    _add_recorded(row, 1850, warmup=1.0)
    assert row["recorded_ratio"] == 1850 / 1900 and row["flows_per_s"] == 1850 / 5.0
    _add_recorded(row, 1990, warmup=1.0)  # the warm-up's flows are in the file too
    assert row["recorded_ratio"] == 1.0
