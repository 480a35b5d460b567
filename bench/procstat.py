"""CPU seconds and RSS of a process tree, read from /proc.

A tree is every process in the server's session (servers start with `start_new_session`,
so the session id is the leader's pid): that holds worker children however they were
forked; and their descendants that started sessions of their own. CPU is utime+stime plus
cutime+cstime (proc(5): children that exited and were waited for), so a worker that exits
and is reaped by its parent still counts.
"""
from __future__ import annotations

import os
import threading

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode()
    except OSError:
        return None
    # Field 2 (comm) may hold spaces and parens: split after the last ')'.
    return raw[raw.rindex(")") + 2:].split()


def tree_pids(root: int) -> list[int]:
    """The pids of the session led by `root` (the leader included), and their descendants
    in sessions of their own (the recorder's writer process starts one)."""
    parents: dict[int, int] = {}
    pids = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if not fields:
            continue
        # After comm: state(0) ppid(1) pgrp(2) session(3)
        parents[int(name)] = int(fields[1])
        if int(name) == root or int(fields[3]) == root:
            pids.add(int(name))
    for pid in parents:
        ancestor, seen = parents[pid], 0
        while ancestor > 1 and ancestor not in pids and seen < 64:
            ancestor, seen = parents.get(ancestor, 0), seen + 1
        if ancestor in pids:
            pids.add(pid)
    return sorted(pids)


def cpu_seconds(root: int) -> float:
    """utime+stime+cutime+cstime summed over the tree, in seconds."""
    ticks = 0
    for pid in tree_pids(root):
        fields = _stat_fields(pid)
        if fields:
            # utime(11) stime(12) cutime(13) cstime(14), counted after comm.
            ticks += sum(int(x) for x in fields[11:15])
    return ticks / _TICK


def rss_bytes(root: int, pids: list[int] | None = None) -> int:
    """Resident set size summed over the tree (statm's second field)."""
    total = 0
    for pid in pids if pids is not None else tree_pids(root):
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * _PAGE
        except (OSError, IndexError):
            pass
    return total


def fd_count(root: int) -> int:
    """Open file descriptors over the tree."""
    total = 0
    for pid in tree_pids(root):
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return total


class Sampler:
    """While active, samples the tree's RSS every `interval` s; gives CPU used and peak RSS.

    with Sampler(pid) as s: load()
    s.cpu_s, s.peak_rss
    """

    def __init__(self, root: int | None, interval: float = 0.1):
        self.root, self.interval = root, interval
        self.cpu_s: float | None = None
        self.peak_rss: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu0 = 0.0

    def __enter__(self) -> Sampler:  # noqa: PYI034
        if self.root is None:
            return self
        self.peak_rss = rss_bytes(self.root)
        self._cpu0 = cpu_seconds(self.root)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        # Listing the tree walks all of /proc: do it once a second, read RSS every tick.
        pids, n = tree_pids(self.root), 0
        while not self._stop.wait(self.interval):
            n += 1
            if n % max(1, round(1 / self.interval)) == 0:
                pids = tree_pids(self.root)
            self.peak_rss = max(self.peak_rss or 0, rss_bytes(self.root, pids))

    def __exit__(self, *exc) -> None:
        if self.root is None:
            return
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss or 0, rss_bytes(self.root))
        self.cpu_s = cpu_seconds(self.root) - self._cpu0
