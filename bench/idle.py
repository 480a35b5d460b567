"""Memory per idle keep-alive client connection.

10,000 connections are opened to the target, each completes one GET (so each is a real
HTTP keep-alive connection, past parsing, with whatever upstream connection the proxy
keeps for it), then sits idle. The figure is the target's RSS (whole process tree) with
them open minus its RSS before, divided by the count. Both this process and the target
get RLIMIT_NOFILE raised (the target through its start wrapper, see proc.Server).
"""
from __future__ import annotations

import asyncio
import re
import time

from bench.origin import BODIES
from bench.proc import free_port, log, raise_nofile
from bench.procstat import fd_count, rss_bytes
from bench.scenarios import Column, Context, check_get, scenario
from bench.targets import HTTP_TARGETS

N_CONNS = 10_000
IDLE_TARGETS = ("fastproxy", "nginx", "mitmdump")
#: mitmdump takes ~3 minutes to take 10,000 connections (~29 KB each): run it only when
#: asked for by name, `--only idle/mitmdump`.
OPT_IN = {"mitmdump"}
_CL = re.compile(rb"(?im)^content-length:\s*(\d+)\s*$")


async def _one(port: int, request: bytes, sem: asyncio.Semaphore):
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            writer.close()
            raise RuntimeError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        m = _CL.search(head)
        await reader.readexactly(int(m.group(1)) if m else 0)
        return reader, writer


async def hold_idle(pid: int, port: int, host: str, path: str, n: int, timeout: float) -> dict:
    """Open n keep-alive connections, measure the tree's RSS and fds, close them."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    sem = asyncio.Semaphore(256)
    await asyncio.sleep(1.0)
    before, fds_before = rss_bytes(pid), fd_count(pid)
    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(_one(port, request, sem)) for _ in range(n)]
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    ok = [t.result() for t in done if not t.cancelled() and t.exception() is None]
    errors = [repr(t.exception()) for t in done if not t.cancelled() and t.exception()]
    open_s = time.monotonic() - t0
    await asyncio.sleep(2.0)  # let the target settle (buffers freed, tasks parked)
    after, fds_after = rss_bytes(pid), fd_count(pid)
    for _, w in ok:
        w.close()
    await asyncio.sleep(0.5)
    return {"opened": len(ok), "failed": len(errors) + len(pending),
            "first_error": errors[0] if errors else None, "open_seconds": open_s,
            "rss_before_mib": before / 2**20, "rss_after_mib": after / 2**20,
            "fds_before": fds_before, "fds_after": fds_after,
            "bytes_per_conn": (after - before) / len(ok) if ok else None}


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


@scenario("idle", f"{N_CONNS:,} idle keep-alive client connections (one GET each, then idle)",
          order=30, columns=[
    Column("target", "label", "{}"), Column("held", "opened", "{:,}"),
    Column("failed", "failed", "{:,}"),
    Column("RSS before MiB", "rss_before_mib", "{:,.1f}"),
    Column("RSS after MiB", "rss_after_mib", "{:,.1f}"),
    Column("bytes/conn", "bytes_per_conn", "{:,.0f}"),
    Column("fds after", "fds_after", "{:,}"),
])
def idle(ctx: Context) -> list[dict]:
    raise_nofile()
    rows = []
    for name in IDLE_TARGETS:
        if ctx.wanted("idle", name, opt_in=name in OPT_IN):
            rows.append(idle_target(ctx, name))
    return rows


def idle_target(ctx: Context, name: str) -> dict:
    t = HTTP_TARGETS[name]
    row = {"scenario": "idle", "target": name, "label": t.label, "conns": N_CONNS}
    path, size = BODIES["64B"]
    host = f"127.0.0.1:{ctx.origin.port}"
    srv = None
    loop = _new_loop()
    try:
        srv = t.start(free_port(), ctx.origin.port).start()
        check_get(srv.port, path, host, size)
        row.update(loop.run_until_complete(
            hold_idle(srv.pid, srv.port, host, path, N_CONNS, timeout=180)))
    except Exception as e:  # noqa: BLE001 - a failure is a row
        died = "" if srv is None or srv.alive() else f" (server died: {srv.log_tail(500)})"
        log(f"idle/{name}: FAILED: {e}{died}")
        row["error"] = f"{e}{died}"
    finally:
        loop.close()
        if srv:
            srv.stop()
    if row.get("bytes_per_conn") is not None:
        log(f"idle/{name}: {row['opened']:,} held, {row['bytes_per_conn']:,.0f} bytes/conn")
    return row
