"""RSS and PSS of a process tree, read from /proc (Linux only).

PSS (proportional set size) is the honest number for servers that fork per
session: pages shared between the parent and its children are split between
them instead of being counted once per process, as RSS does.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    rss: int = 0
    pss: int = 0
    processes: int = 0

    def max(self, other: Usage) -> Usage:
        return Usage(max(self.rss, other.rss), max(self.pss, other.pss),
                     max(self.processes, other.processes))  # fmt: skip


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ")".
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_usage(pid: int) -> Usage:
    """Memory of ``pid`` and all its descendants, in bytes."""
    tree = _children()
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(tree.get(p, ()))
    rss = pss = 0
    for p in seen:
        try:
            with open(f"/proc/{p}/smaps_rollup", "rb") as fh:
                for line in fh:
                    if line.startswith(b"Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith(b"Pss:"):
                        pss += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue
    return Usage(rss, pss, len(seen))


class PeakSampler:
    """Samples a tree's memory in a thread while a measurement runs."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = Usage()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = self.peak.max(tree_usage(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = self.peak.max(tree_usage(self.pid))
