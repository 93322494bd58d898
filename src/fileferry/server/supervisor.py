"""The parent of ``--workers N``: forks the workers, restarts the ones that die, relays signals.

A worker that dies (a crash, the OOM killer, an operator's ``kill -9``)
takes its own sessions with it, and nothing else: the parent zeroes its
column of the shared limits (its sessions and uploads in flight no longer
count), frees the shared lock if the worker died holding it, and forks a
new worker into the same slot (same passive slice, same column). The other
workers never notice; their transfers go on. A worker that keeps dying is
restarted after a delay that doubles up to a minute (:class:`Backoff`), so
a broken certificate or a full disk does not become a fork loop; a worker
that then ran for a while is forgiven. Every death and every restart is
logged.

The parent waits on one ``select``: the signal wake-up pipe (SIGCHLD tells
it a worker died; SIGTERM, SIGINT and SIGHUP are relayed) and the
readiness pipes of workers still starting. It never sleeps or polls.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING

from fileferry.config import ServerConfig
from fileferry.limits.table import LockLost
from fileferry.server.signals import STOP_NOW

if TYPE_CHECKING:  # made by the runner (workers.py); here only used
    from fileferry.limits.shared import SharedLimits

log = logging.getLogger("fileferry.workers")

#: How long the parent waits for every worker to report that it listens.
READY_TIMEOUT = 60.0

if TYPE_CHECKING:
    #: Runs one worker in the forked child and never returns: (config, readiness
    #: pipe, its view of the shared limits, listening sockets, parent pid).
    WorkerMain = Callable[
        [ServerConfig, int, SharedLimits | None, tuple[socket.socket | None, ...], int],
        None,
    ]


class WorkerStartError(Exception):
    """A worker could not start (its message says why); the server did not start."""


class Backoff:
    """How long to wait before restarting a worker that died.

    The first death after a stable run is restarted at once; each further
    quick death doubles the wait, from ``first`` to ``limit`` seconds. A run
    of ``stable`` seconds or more starts the count again.
    """

    def __init__(self, first: float = 1.0, limit: float = 60.0, stable: float = 30.0) -> None:
        self.first = first
        self.limit = limit
        self.stable = stable
        self.failures = 0

    def next_delay(self, uptime: float) -> float:
        if uptime >= self.stable:
            self.failures = 0
        delay = 0.0 if self.failures == 0 else self.first * 2 ** (self.failures - 1)
        self.failures += 1
        return min(delay, self.limit)


@dataclass
class Slot:
    """One worker place: its config and column stay, the process in it may change."""

    index: int
    config: ServerConfig
    pid: int = 0
    started: float = 0.0
    #: Read end of the readiness pipe while the worker starts; -1 after.
    ready: int = -1
    #: When to fork it again (monotonic), once it died.
    due: float | None = None
    restarts: int = 0
    backoff: Backoff = field(default_factory=Backoff)


_HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD)
#: What :meth:`Supervisor._read_ready` found besides an error.
_READY = object()
_ENDED = object()


class Supervisor:
    """The parent's whole job, between :meth:`start` and the end of :meth:`run`.

    ``worker_main`` runs in each forked child (``workers.run_worker``); it is
    passed in so that this module builds nothing itself.
    """

    def __init__(
        self,
        configs: list[ServerConfig],
        shared: SharedLimits | None,
        listeners: tuple[socket.socket | None, ...],
        worker_main: WorkerMain,
    ) -> None:
        self.slots = [Slot(i, cfg) for i, cfg in enumerate(configs)]
        #: The limit tables, mapped before the fork so every worker shares them.
        self.shared = shared
        self.listeners = listeners
        self.worker_main = worker_main
        #: Called with the pid of each worker that ended (e.g. to drop its
        #: live metrics); a failure there is logged, never fatal.
        self.on_exit: Callable[[int], None] | None = None
        self.stopping = False
        self.status = 0
        self._pid = os.getpid()
        self._wake = self._wake_write = -1

    # --- signals ----------------------------------------------------------------------

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """Install the parent's handlers and wake-up pipe; restore them after."""
        read, write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        previous = {sig: signal.signal(sig, self._signal) for sig in _HANDLED}
        old_wake = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        self._wake, self._wake_write = read, write
        try:
            yield
        finally:
            signal.set_wakeup_fd(old_wake)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(read)
            os.close(write)
            self._wake = self._wake_write = -1

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        if os.getpid() != self._pid or signum == signal.SIGCHLD:
            return  # SIGCHLD only wakes the loop (through the pipe)
        if signum == signal.SIGHUP:
            self._send(signal.SIGHUP)
        elif not self.stopping:
            log.info("stopping: draining the workers")
            self.stop()
        else:
            log.info("stopping now")
            self._send(STOP_NOW)

    def stop(self) -> None:
        """Drain every worker; nothing is restarted any more."""
        self.stopping = True
        for sock in self.listeners:
            # The kernel refuses new clients once the workers closed theirs too.
            if sock is not None:
                sock.close()
        for slot in self.slots:
            slot.due = None
        self._send(signal.SIGTERM)

    def _send(self, sig: int) -> None:
        for slot in self.slots:
            if slot.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, sig)

    # --- workers ------------------------------------------------------------------------

    def _fork(self, slot: Slot) -> None:
        read, write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        # Blocked across the fork: the child must not run the parent's handlers.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, which _exits
                signal.set_wakeup_fd(-1)
                for fd in (read, self._wake, self._wake_write, *(o.ready for o in self.slots)):
                    if fd >= 0:
                        os.close(fd)
                shared = self.shared.for_worker(slot.index) if self.shared is not None else None
                self.worker_main(slot.config, write, shared, self.listeners, self._pid)
        finally:
            if os.getpid() == self._pid:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(write)
        slot.pid, slot.ready, slot.started, slot.due = pid, read, time.monotonic(), None

    def start(self) -> tuple[str, int] | None:
        """Fork every worker; None once all listen, else the first error a worker
        reported and the exit status it calls for (2: configuration, 1: anything else)."""
        for slot in self.slots:
            self._fork(slot)
        deadline = time.monotonic() + READY_TIMEOUT
        while any(slot.ready >= 0 for slot in self.slots):
            left = deadline - time.monotonic()
            starting = {slot.ready: slot for slot in self.slots if slot.ready >= 0}
            if left <= 0 or not (readable := select.select(list(starting), [], [], left)[0]):
                return "workers did not start in time", 1
            for fd in readable:
                said = self._read_ready(starting[fd])
                if isinstance(said, tuple):
                    return said
                if said is _ENDED:
                    return "a worker exited during start", 1
        return None

    def _read_ready(self, slot: Slot) -> tuple[str, int] | object:
        """What a starting worker said on its pipe (which is then closed):
        :data:`_READY`, :data:`_ENDED` (nothing; it is gone), or the error it
        reported and the exit status that calls for (2: configuration, 1: other)."""
        data = os.read(slot.ready, 4096)
        self._close_ready(slot)
        if data[:1] in (b"E", b"C"):
            message = data[1:].split(b"\n", 1)[0].decode(errors="replace")
            return message, 2 if data[:1] == b"C" else 1
        return _READY if data.startswith(b"R") else _ENDED

    def _close_ready(self, slot: Slot) -> None:
        if slot.ready >= 0:
            os.close(slot.ready)
        slot.ready = -1

    def run(self) -> int:
        """Supervise until every worker ended after a stop; the exit status."""
        while True:
            self._reap()
            if self.stopping and not any(slot.pid for slot in self.slots):
                return self.status
            now = time.monotonic()
            for slot in self.slots:
                if slot.due is not None and slot.due <= now:
                    self._fork(slot)
                    slot.restarts += 1
            dues = [slot.due for slot in self.slots if slot.due is not None]
            timeout = max(0.0, min(dues) - now) if dues else None
            starting = {slot.ready: slot for slot in self.slots if slot.ready >= 0}
            readable = select.select([self._wake, *starting], [], [], timeout)[0]
            for fd in readable:
                if fd == self._wake:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self._wake, 512):
                            pass
                    continue
                slot = starting[fd]
                said = self._read_ready(slot)
                if isinstance(said, tuple):
                    message = said[0]
                    log.error(
                        "worker %d (pid %d) could not start: %s", slot.index, slot.pid, message
                    )
                elif said is _READY:
                    log.warning("worker %d (pid %d) restarted and serving", slot.index, slot.pid)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is not None:
                self._buried(slot, os.waitstatus_to_exitcode(status))

    def _buried(self, slot: Slot, code: int) -> None:
        pid, slot.pid = slot.pid, 0
        self._close_ready(slot)
        if self.on_exit is not None:
            try:
                self.on_exit(pid)
            except Exception:
                log.exception("cleaning up after worker %d (pid %d) failed", slot.index, pid)
        if self.shared is not None:
            free = getattr(self.shared.lock, "free_if_held_by", None)
            if free is not None and free(pid):
                log.error(
                    "worker %d (pid %d) died holding the shared limits lock; freed", slot.index, pid
                )
            # Its sessions and uploads are gone with it: they must not hold a cap.
            try:
                self.shared.reset_worker(slot.index)
            except LockLost:
                log.error("worker %d died holding the shared limits lock", slot.index)
        if self.stopping:
            if code != 0:
                self.status = 1
            return
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        delay = slot.backoff.next_delay(time.monotonic() - slot.started)
        when = "now" if delay == 0 else f"in {delay:g} s"
        log.error("worker %d (pid %d) %s; restarting it %s", slot.index, pid, how, when)
        slot.due = time.monotonic() + delay
