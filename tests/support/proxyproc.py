"""Run the real `fastproxy run` command on a free 127.0.0.1 port for a test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"proxy exited early with {proc.returncode}: {proc.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


class ProxyProcess:
    """`fastproxy run -p PORT ARGS...` as a child process; output collected to files."""

    def __init__(self, *args: str, tmp_path: Path, env: dict | None = None) -> None:
        self.port = free_port()
        self.stdout_path = tmp_path / f"proxy-{self.port}.out"
        self.stderr_path = tmp_path / f"proxy-{self.port}.err"
        cmd = [sys.executable, "-m", "fastproxy.cli", "run", "--listen-host", "127.0.0.1",
               "-p", str(self.port), "--set", f"confdir={tmp_path / 'confdir'}", *args]
        self.proc = subprocess.Popen(
            cmd, stdout=open(self.stdout_path, "wb"), stderr=open(self.stderr_path, "wb"),
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        try:
            wait_for_port(self.port)
        except Exception:
            self.stop()
            raise RuntimeError(f"proxy did not start: {self.stderr}") from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Stop the proxy (and its workers) and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode
