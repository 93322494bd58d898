"""Fixed tables in shared memory, one lock: the machinery of the shared limits.

With ``--workers N`` the session caps, the brute-force bans, the per-account
session counts and the quota usage must be one figure for the whole server,
not one per worker: otherwise an attacker gets N times the password guesses
and an operator's caps are multiplied by N. Those figures live in tables of
this module, in anonymous ``MAP_SHARED`` memory that the parent maps
*before* forking (so every worker inherits the very same pages), guarded by
one ``multiprocessing.Lock`` (a process-shared semaphore, also inherited).
The tables themselves are laid out by :mod:`fileferry.limits.shared` and
:mod:`fileferry.limits.sharedquota`.

Why this shape:

* **No server process, no sockets**: a check is a lock, a hash probe and a
  few integer reads, a few microseconds, so it runs right on the event loop.
  The lock is never held across an ``await``.
* **Fixed size, sized from the configuration**: rows are int64, a table
  never grows, so nothing has to be reallocated under other processes' feet.
  Tables that follow sessions get room for ``max_sessions`` keys, which is
  more than can ever be live; when a table is full anyway, callers fail safe
  (refuse the session; keep every ban).
* **Open addressing without tombstones**: linear probing, and deletion
  shifts the following rows back (Knuth's algorithm R), so a table churned
  by millions of short sessions never degrades.
* **Per-worker columns**: a count that a worker adds and later takes back
  (its sessions, its uploads in flight) is kept in that worker's own column
  and the limits look at the sum; a worker that dies is forgotten by zeroing
  its column (``SharedLimits.reset_worker``), nothing to reconcile.
* **Keys are hashed** with BLAKE2b to 8 bytes: fixed-width rows, and a
  collision (about 2^-64 per pair) would only make two keys share a count.

With one worker (the default) none of this is used: the dictionaries of
:mod:`fileferry.limits.local` and :mod:`fileferry.limits.ledger` are
several times faster per admit and release (figures in ``bench/notes.md``).
"""

from __future__ import annotations

import functools
import hashlib
import os
from array import array
from collections.abc import Iterator
from typing import Protocol

#: Brute-force rows (client addresses) tracked at once.
MAX_TRACKED = 65536
#: Seconds after which a shared lock is taken to be held by a dead process.
LOCK_TIMEOUT = 5.0


class Lock(Protocol):
    def __enter__(self) -> object: ...

    def __exit__(self, *exc: object) -> object: ...


class NoLock:
    """The lock of tables that only one thread of one process ever touches."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class LockLost(RuntimeError):
    """A shared lock stayed taken far longer than any holder keeps it: its holder died."""


class ProcessLock:
    """A lock shared by forked workers (and threads), that never waits forever.

    Every critical section is a few microseconds; if the lock cannot be had
    within :data:`LOCK_TIMEOUT`, its holder was killed inside one (SIGKILL, a
    crash), and waiting on would hang this worker — and keep it from obeying
    the supervisor's SIGTERM — for good. Failing the one operation instead
    lets the worker log it and shut down when told.
    """

    def __init__(self) -> None:
        # Imported here: one worker (the default) never builds a shared table,
        # and multiprocessing alone is a megabyte of modules it would not use.
        import mmap
        import multiprocessing

        self._lock = multiprocessing.Lock()
        # The holder's pid, in memory every forked worker shares: a worker
        # killed inside a section leaves it there for the supervisor to see
        # (:meth:`free_if_held_by`), so nobody waits for the timeout.
        self._mm = mmap.mmap(-1, 8)
        self._holder = memoryview(self._mm).cast("q")

    def __enter__(self) -> None:
        if not self._lock.acquire(timeout=LOCK_TIMEOUT):
            raise LockLost("the shared limits lock is held by a worker that died")
        self._holder[0] = _pid[0]

    def __exit__(self, *exc: object) -> None:
        self._holder[0] = 0
        self._lock.release()

    def free_if_held_by(self, pid: int) -> bool:
        """Release the lock if process ``pid``, which is gone, died holding it.

        For the supervisor, once it reaped ``pid``. The tables may hold a
        half-made change of that worker's; the caller then clears its column.
        """
        if self._holder[0] != pid:
            return False
        self._holder[0] = 0
        self._lock.release()
        return True


#: This process's pid, kept current across forks without a system call per lock.
_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


@functools.lru_cache(maxsize=8192)
def key_tag(key: str) -> int:
    """The row tag of ``key``: 8 bytes of BLAKE2b, never 0 (0 marks a free row)."""
    tag = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    tag -= 1 << 63  # into the signed range of an int64 cell
    return tag or 1


class Table:
    """Rows of ``width`` int64 cells (cell 0: the tag) in anonymous shared memory.

    ``rows`` is the most live rows it takes; it has room for a third more, so
    probes stay short. ``header`` cells before the rows hold table-wide
    figures (``ints[1:1 + header]``); ``ints[0]`` is the live row count.
    Every method expects the caller to hold the lock.
    """

    def __init__(self, rows: int, width: int, header: int = 0, lock: Lock | None = None) -> None:
        capacity = 16
        while capacity * 3 < rows * 4:
            capacity *= 2
        self.rows = rows
        self.width = width
        self.capacity = capacity
        self.lock: Lock = lock if lock is not None else NoLock()
        self._first = 1 + header
        import mmap

        # mmap(-1) is anonymous and MAP_SHARED: forked children see our writes.
        # Its pages are only allocated when touched, so a large table costs
        # what its live rows use.
        self._mm = mmap.mmap(-1, (self._first + capacity * width) * 8)
        self.ints = memoryview(self._mm).cast("q")
        self._blank = memoryview(array("q", [0] * width))

    @property
    def live(self) -> int:
        return self.ints[0]

    def find(self, tag: int) -> int:
        """The index of ``tag``'s first cell, or -1."""
        ints, width, mask, first = self.ints, self.width, self.capacity - 1, self._first
        slot = tag & mask
        while True:
            base = first + slot * width
            found = ints[base]
            if found == tag:
                return base
            if found == 0:
                return -1
            slot = (slot + 1) & mask

    def insert(self, tag: int) -> int:
        """``tag``'s row, made (all zero but the tag) if absent; -1 when full."""
        ints, width, mask, first = self.ints, self.width, self.capacity - 1, self._first
        slot = tag & mask
        while True:
            base = first + slot * width
            found = ints[base]
            if found == tag:
                return base
            if found == 0:
                if ints[0] >= self.rows:
                    return -1
                ints[base] = tag
                ints[0] += 1
                return base
            slot = (slot + 1) & mask

    def delete(self, base: int) -> None:
        """Free the row at ``base``, moving later rows of its probe run back."""
        ints, width, mask, first = self.ints, self.width, self.capacity - 1, self._first
        hole = (base - first) // width
        slot = hole
        while True:
            slot = (slot + 1) & mask
            at = first + slot * width
            tag = ints[at]
            if tag == 0:
                break
            home = tag & mask
            # The row at `slot` may move into the hole unless its home lies
            # cyclically in (hole, slot]: then the hole is not on its probe path.
            if (hole < slot and hole < home <= slot) or (
                hole > slot and (home > hole or home <= slot)
            ):
                continue
            dst = first + hole * width
            ints[dst : dst + width] = ints[at : at + width]
            hole = slot
        dst = first + hole * width
        ints[dst : dst + width] = self._blank
        ints[0] -= 1

    def bases(self) -> Iterator[int]:
        """The first cell of every live row. A deletion moves rows: to delete
        while sweeping, collect the tags first and :meth:`discard` them."""
        ints, width, first = self.ints, self.width, self._first
        return (first + i * width for i in range(self.capacity) if ints[first + i * width] != 0)

    def discard(self, tags: list[int]) -> None:
        """Delete the rows of ``tags`` (those still there)."""
        for tag in tags:
            base = self.find(tag)
            if base >= 0:
                self.delete(base)

    def total(self, start: int, count: int) -> int:
        """The sum of ``count`` cells from ``start`` (a row's per-worker columns)."""
        return sum(self.ints[start : start + count])


def clear_column(table: Table, cell: int, counts: int = 0) -> None:
    """Zero cell ``cell`` of every row (a dead worker's column; lock held).

    With ``counts``, rows whose ``counts`` cells after the tag are then all
    zero are deleted: nobody counts anything there any more.
    """
    ints = table.ints
    empty = []
    for base in table.bases():
        ints[base + cell] = 0
        if counts and not table.total(base + 1, counts):
            empty.append(ints[base])
    table.discard(empty)
