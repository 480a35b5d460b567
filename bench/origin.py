"""The origin every scenario loads: nginx, one worker, fixed bodies, keep-alive.

The config lives in a temp dir under bench/.work; the bodies are files served with
sendfile, so the origin spends as little CPU as a server can.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.proc import WORK, Server, free_port, which

#: name -> (URL path, size in bytes)
BODIES = {"64B": ("/64b", 64), "64KiB": ("/64k", 64 * 1024), "1MiB": ("/1m", 1024 * 1024)}

_COMMON = """\
{main}{user}worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 32768; use epoll; multi_accept on; }}
http {{
  access_log off;
  default_type application/octet-stream;
  types {{ }}
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_timeout 300s;
  keepalive_requests 1000000000;
  client_body_temp_path {dir}/t-body; proxy_temp_path {dir}/t-proxy;
  fastcgi_temp_path {dir}/t-fcgi; uwsgi_temp_path {dir}/t-uwsgi; scgi_temp_path {dir}/t-scgi;
{http}
}}
{stream}"""


def nginx_conf(workdir: Path, http_block: str, main: str = "", stream: str = "") -> Path:
    """Write nginx.conf for one instance; `user root` only when we are root (else ignored).

    `main` goes first at the top level (`load_module` must precede `events`), `stream`
    last, also at the top level."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = workdir / "nginx.conf"
    conf.write_text(_COMMON.format(main=main, user=user, dir=workdir, http=http_block,
                                   stream=stream))
    return conf


def nginx_server(name: str, workdir: Path, http_block: str, port: int, main: str = "",
                 stream: str = "") -> Server:
    """A Server running nginx in the foreground with its own prefix, config and logs."""
    conf = nginx_conf(workdir, http_block, main, stream)
    argv = [which("nginx"), "-p", str(workdir), "-e", str(workdir / "error.log"),
            "-c", str(conf)]
    return Server(name, argv, port, workdir=workdir)


def write_bodies(root: Path) -> None:
    for path, size in BODIES.values():
        # Printable, fixed content: the same bytes for every run.
        (root / path.lstrip("/")).write_bytes((b"fastproxy-bench-" * (size // 16 + 1))[:size])


def origin() -> Server:
    """The origin nginx (not yet started; use as a context manager)."""
    return static_origin("origin")


def static_origin(name: str, listen_options: str = "", directives: str = "") -> Server:
    """An nginx serving the fixed bodies (not yet started), its ``listen`` given
    ``listen_options`` and its ``server`` block the extra ``directives`` (TLS)."""
    WORK.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=WORK))
    (d / "www").mkdir()
    write_bodies(d / "www")
    port = free_port()
    block = f"""\
  open_file_cache max=16 inactive=600s;
  server {{
    listen 127.0.0.1:{port} {listen_options} backlog=4096;
{directives}    root {d}/www;
    location / {{ }}
  }}"""
    return nginx_server(name, d, block, port)
