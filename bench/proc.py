"""Starting, waiting for and always stopping the servers a benchmark needs.

Every server runs in its own session (so its process group holds it and every worker it
forks) with RLIMIT_NOFILE raised, and is stopped by killing that group: on return, on an
exception and on Ctrl-C alike (`Server` is a context manager; `stop_all` runs at exit).
"""
from __future__ import annotations

import atexit
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
NOFILE = 65536

_live: list[Server] = []


def raise_nofile(limit: int = NOFILE) -> None:
    """Raise this process's RLIMIT_NOFILE (soft and, as root, hard) to at least `limit`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < limit:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            return
        except (ValueError, OSError):
            limit = hard
    if soft < limit:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg: str) -> None:
    """Progress goes to stderr, so stdout carries only the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class ServerError(RuntimeError):
    """A server did not come up (the message carries the tail of its log)."""


class Server:
    """One server process tree: started in its own session, stopped by killing the group."""

    def __init__(self, name: str, argv: list[str], port: int, env: dict | None = None,
                 workdir: Path | None = None):
        self.name, self.argv, self.port = name, argv, port
        self.env = env
        self.workdir = workdir  # a temp dir of its own, removed on stop
        self.log_path = WORK / "logs" / f"{name}-{port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True, env=self.env, cwd=ROOT,
                # Runs between fork and exec; only setrlimit, no locks taken.
                preexec_fn=raise_nofile)  # noqa: PLW1509
        _live.append(self)
        try:
            self.wait_accepting(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_accepting(self, timeout: float) -> None:
        """Poll until the port accepts a TCP connection, or fail with the log's tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise ServerError(f"{self.name} not accepting on {self.port} after {timeout:.0f}s: {self.log_tail()}")

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:].strip() or "(empty log)"
        except OSError:
            return "(no log)"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM the whole process group, SIGKILL what is left after 5 s."""
        if self.proc is None:
            if self.workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            return
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                # The leader is gone; make sure no forked worker outlives it.
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
            break
        if self in _live:
            _live.remove(self)
        self.proc = None
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Server:  # noqa: PYI034
        return self if self.proc else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_all() -> None:
    for srv in list(_live):  # noqa: PERF101 - stop() removes from _live
        srv.stop()


def _sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    """For the bench's main: SIGTERM unwinds like Ctrl-C, and exit stops every server."""
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _sigterm)
    # Started in the background by a non-interactive shell, SIGINT arrives ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)


APT = {"wrk": "wrk", "nginx": "nginx-light", "h2load": "nghttp2-client"}
#: nginx's stream module (the C relay anchor of `tunnel` and `tcp`): a file, not a command;
#: installed with the tools above when missing, but its rows only fail when it stays missing.
NGX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
APT_OPTIONAL = {NGX_STREAM_MODULE: "libnginx-mod-stream"}


def which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


def ensure_tools() -> None:
    """apt-get install wrk, nginx-light, nghttp2-client (and libnginx-mod-stream) when any
    is missing; needs root. Without root only a missing required tool is an error."""
    missing = [pkg for exe, pkg in APT.items() if not which(exe)]
    optional = [pkg for path, pkg in APT_OPTIONAL.items() if not Path(path).exists()]
    if optional and not missing and os.geteuid() != 0:
        log(f"{' '.join(optional)} missing and not root: the nginx stream rows will fail")
        return
    missing += optional
    if not missing:
        return
    log(f"installing {' '.join(missing)} with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Keep the package's own nginx service from starting on port 80 (policy-rc.d, exit 101).
    policy = Path("/usr/sbin/policy-rc.d")
    made_policy = not policy.exists()
    if made_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env,
                       timeout=900)
    finally:
        if made_policy:
            policy.unlink(missing_ok=True)
    still = [exe for exe in APT if not which(exe)]
    if still:
        raise SystemExit(f"bench: could not install {still}")


def busy_cores(seconds: float = 1.0) -> float:
    """How many cores' worth of CPU the machine spent over `seconds` (from /proc/stat)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return (1 - (i1 - i0) / max(1, t1 - t0)) * (os.cpu_count() or 1)
