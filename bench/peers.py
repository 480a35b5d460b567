"""The anchors: nginx as a reverse proxy and as a TCP relay (C), mitmdump (Python), set up on demand.

mitmproxy lives in its own virtualenv, bench/.venv-peers: it is never a dependency of
fastproxy, and its version is recorded with the results.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from bench.origin import nginx_server
from bench.proc import BENCH, NGX_STREAM_MODULE, WORK, Server, log

PEERS_VENV = BENCH / ".venv-peers"
MITMDUMP = PEERS_VENV / "bin" / "mitmdump"


def ensure_mitmdump() -> Path:
    """Create bench/.venv-peers with mitmproxy in it if it is not there yet."""
    if MITMDUMP.exists():
        return MITMDUMP
    log("installing mitmproxy into bench/.venv-peers (once)")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(PEERS_VENV)], check=True, timeout=300)
    pip = [str(PEERS_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True, timeout=600)
    subprocess.run([*pip, "mitmproxy"], check=True, timeout=1200)
    return MITMDUMP


def mitmdump_version() -> str:
    try:
        out = subprocess.run([str(MITMDUMP), "--version"], check=False, capture_output=True,
                             text=True, timeout=60).stdout
        return out.splitlines()[0].split(":", 1)[1].strip()
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def mitmdump(port: int, mode: str) -> Server:
    """mitmdump -q on 127.0.0.1:port in `mode` (`reverse:URL` or `regular`)."""
    confdir = WORK / "mitmproxy-conf"
    argv = [str(ensure_mitmdump()), "-q", "--listen-host", "127.0.0.1", "-p", str(port),
            "--mode", mode, "--set", f"confdir={confdir}"]
    return Server("mitmdump", argv, port)


def nginx_proxy(port: int, origin_port: int) -> Server:
    """nginx reverse proxy, one worker, keep-alive to the origin, streaming bodies."""
    d = Path(tempfile.mkdtemp(prefix="nginx-proxy-", dir=WORK))
    block = f"""\
  upstream origin {{
    server 127.0.0.1:{origin_port};
    keepalive 128;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
  }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      # Stream like fastproxy does: relay through one 64 KiB buffer, never to disk.
      # (Measured here against buffering on with 64 x 16k or 8 x 256k buffers: the same
      # at 64 B and 64 KiB, up to 1.7x the req/s at 1 MiB; the anchor should be strong.)
      proxy_buffering off;
      proxy_buffer_size 64k;
      proxy_buffers 64 16k;
      proxy_busy_buffers_size 64k;
      proxy_max_temp_file_size 0;
    }}
  }}"""
    return nginx_server("nginx-proxy", d, block, port)


def nginx_stream(port: int, upstream_port: int) -> Server:
    """nginx's stream module relaying TCP from 127.0.0.1:port to 127.0.0.1:upstream_port,
    one worker: the C relay anchor for the tunnel (clients connect to it directly, no
    CONNECT). Needs libnginx-mod-stream (`run.py` apt-gets it when root)."""
    if not Path(NGX_STREAM_MODULE).exists():
        raise RuntimeError(f"{NGX_STREAM_MODULE} missing (apt-get install libnginx-mod-stream)")
    d = Path(tempfile.mkdtemp(prefix="nginx-stream-", dir=WORK))
    stream = f"""\
stream {{
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    proxy_pass 127.0.0.1:{upstream_port};
    proxy_buffer_size 256k;
  }}
}}
"""
    return nginx_server("nginx-stream", d, "", port,
                        main=f"load_module {NGX_STREAM_MODULE};\n", stream=stream)
