"""Raw TCP relay throughput and WebSocket message rate, each against the direct path.

- `tcp`: 1 GiB through a CONNECT tunnel (bytes neither TLS nor HTTP, so a TCP flow) on
  1 connection and split over 50, to the sink of `bench.tunnel`; fastproxy with no addon
  (the pure Cython relay) and with a `tcp_message` addon (the Python path), vs direct; and
  `nginx-stream`, nginx's stream module relaying to the same sink, one worker, the client
  connecting to it directly (no CONNECT): the C relay anchor.
- `websocket`: small messages (32 bytes) echoed through fastproxy in reverse mode, with
  100 in flight, with no addon (relay) and with a `websocket_message` addon (wsproto on
  both sides), vs the echo server directly. The client is the `websockets` library.

Standalone: `.venv/bin/python -m bench.scenarios_ws_tcp [--tcp] [--ws]` prints both tables.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from pathlib import Path

from bench import peers
from bench import tunnel as tcpbench
from bench.proc import WORK, Server, free_port, log
from bench.procstat import Sampler
from bench.scenarios import Column, Context, median, scenario
from bench.targets import fastproxy

GIB = 1 << 30
WS_MESSAGES = 20000
WS_WINDOW = 100
WS_SIZE = 32


def _addon(name: str, source: str) -> str:
    path = WORK / "addons" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return str(path)


def tcp_addon() -> str:
    return _addon("tcp_message_noop.py", "def tcp_message(flow):\n    flow.messages.clear()\n")


def ws_addon() -> str:
    return _addon("ws_message_noop.py",
                  "def websocket_message(flow):\n    flow.websocket.messages.clear()\n")


# -- TCP ---------------------------------------------------------------------------------

def _parallel(srv: Server | None, sink_port: int, conns: int, via_connect: bool) -> float:
    """Move 1 GiB over `conns` connections at once; seconds until every sink said OK."""
    each = GIB // conns
    socks = [tcpbench.open_to_sink(srv, sink_port, via_connect) for _ in range(conns)]
    errors: list[BaseException] = []

    def run(sock) -> None:
        try:
            tcpbench.transfer(sock, each)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in socks]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t0


def tcp_rows(repeats: int, wanted=lambda target: True) -> list[dict]:
    sink_port = free_port()
    sink = Server("sink", [sys.executable, "-m", "bench.tunnel", "--sink", str(sink_port)],
                  sink_port)
    # name -> (make(port) -> Server or None for direct, the client sends CONNECT)
    targets = {
        "direct": (None, False),
        "fastproxy": (lambda p: fastproxy(p, "regular"), True),
        "fastproxy+tcp_message": (lambda p: fastproxy(p, "regular", "-s", tcp_addon()), True),
        "nginx-stream": (lambda p: peers.nginx_stream(p, sink_port), False),
    }
    rows = []
    with sink:
        for conns in (1, 50):
            direct = None
            for name, (make, via_connect) in targets.items():
                if not wanted(name):
                    continue
                srv = None
                try:
                    srv = make(free_port()).start() if make else None
                    runs = []
                    for _ in range(max(3, repeats) if name != "fastproxy+tcp_message" else 1):
                        with Sampler(srv.pid if srv else None) as s:
                            secs = _parallel(srv, sink_port, conns, via_connect)
                        runs.append((secs, s.peak_rss))
                except Exception as e:  # noqa: BLE001 - a failure is a row
                    log(f"tcp/{name}/{conns}: FAILED: {e}")
                    rows.append({"scenario": "tcp", "target": name, "conns": conns,
                                 "error": str(e)})
                    continue
                finally:
                    if srv:
                        srv.stop()
                secs = median([r[0] for r in runs])
                row = {"scenario": "tcp", "target": name, "conns": conns,
                       "mbps": GIB / secs / 1e6, "seconds": secs,
                       "peak_rss_mib": (max(r[1] for r in runs) / 2**20) if srv else None}
                if name == "direct":
                    direct = row["mbps"]
                row["x_direct"] = row["mbps"] / direct if direct else None
                log(f"tcp/{name}/{conns}: {row['mbps']:,.0f} MB/s")
                rows.append(row)
    return rows


@scenario("tcp", "Raw TCP tunnel, 1 GiB on 1 and on 50 connections (median of ≥ 3; "
          "nginx-stream: nginx's stream module, C relay, no CONNECT)", order=25,
          columns=[Column("target", "target", "{}"), Column("conns", "conns", "{}"),
                   Column("MB/s", "mbps", "{:,.0f}"), Column("× direct", "x_direct", "{:.2f}×"),
                   Column("peak RSS MiB", "peak_rss_mib", "{:,.1f}")])
def tcp_scenario(ctx: Context) -> list[dict]:
    return tcp_rows(ctx.repeats, lambda target: ctx.wanted("tcp", target))


# -- WebSocket ---------------------------------------------------------------------------

def serve_ws_echo(port: int) -> None:
    import uvloop
    from websockets.asyncio.server import serve

    async def echo(ws) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with serve(echo, "127.0.0.1", port, compression=None):
            await asyncio.Future()

    uvloop.run(main())


async def _ws_rate(port: int) -> float:
    from websockets.asyncio.client import connect
    payload = b"x" * WS_SIZE
    async with connect(f"ws://127.0.0.1:{port}/", compression=None, proxy=None) as ws:
        for _ in range(200):  # warm up
            await ws.send(payload)
            await ws.recv()
        t0 = time.perf_counter()
        sent = received = 0
        while sent < WS_WINDOW:
            await ws.send(payload)
            sent += 1
        while received < WS_MESSAGES:
            await ws.recv()
            received += 1
            if sent < WS_MESSAGES:
                await ws.send(payload)
                sent += 1
        return WS_MESSAGES / (time.perf_counter() - t0)


def ws_rows(repeats: int, wanted=lambda target: True) -> list[dict]:
    import uvloop
    echo_port = free_port()
    echo = Server("ws-echo", [sys.executable, "-m", "bench.scenarios_ws_tcp", "--ws-echo",
                              str(echo_port)], echo_port)
    targets = {"direct": None, "fastproxy": (), "fastproxy+websocket_message": ("-s", ws_addon())}
    rows, direct = [], None
    with echo:
        for name, extra in targets.items():
            if not wanted(name):
                continue
            srv = (fastproxy(free_port(), f"reverse:http://127.0.0.1:{echo_port}", *extra).start()
                   if extra is not None else None)
            try:
                rates = [uvloop.run(_ws_rate(srv.port if srv else echo_port))
                         for _ in range(max(3, repeats))]
            finally:
                if srv:
                    srv.stop()
            row = {"scenario": "websocket", "target": name, "msgs_per_s": median(rates)}
            if name == "direct":
                direct = row["msgs_per_s"]
            row["x_direct"] = row["msgs_per_s"] / direct if direct else None
            log(f"websocket/{name}: {row['msgs_per_s']:,.0f} msgs/s")
            rows.append(row)
    return rows


@scenario("websocket", f"WebSocket echo, {WS_SIZE}-byte messages, {WS_WINDOW} in flight "
          "(messages/s, median of ≥ 3)", order=26,
          columns=[Column("target", "target", "{}"), Column("msgs/s", "msgs_per_s", "{:,.0f}"),
                   Column("× direct", "x_direct", "{:.2f}×")])
def ws_scenario(ctx: Context) -> list[dict]:
    return ws_rows(ctx.repeats, lambda target: ctx.wanted("websocket", target))


def _print(rows: list[dict]) -> None:
    for row in rows:
        print("  ".join(f"{k}={v:,.2f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    ap = argparse.ArgumentParser()
    ap.add_argument("--ws-echo", type=int)
    ap.add_argument("--tcp", action="store_true")
    ap.add_argument("--ws", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if a.ws_echo:
        serve_ws_echo(a.ws_echo)
    else:
        if a.tcp or not a.ws:
            _print(tcp_rows(a.repeats))
        if a.ws or not a.tcp:
            _print(ws_rows(a.repeats))
