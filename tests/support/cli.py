"""Running real clients and reading event logs in the modes tests."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.support import connlog


def curl(*args: str) -> subprocess.CompletedProcess:
    """curl with a bounded run time; its output is not checked here."""
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True,
                          timeout=30, check=False)


def records(path: Path, event: str, count: int = 1) -> list[dict]:
    """The connlog records of `event`, waiting up to 5 s for `count` of them."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [r for r in connlog.read(str(path)) if r["event"] == event]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {event} in {connlog.read(str(path))}")
