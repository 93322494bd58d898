"""``--metrics ADDR:PORT``: Prometheus metrics, as an observer of the session events.

Only imported when metrics are on (``prometheus-client`` is the ``metrics``
extra). The observer turns each event into counter increments; the HTTP
endpoint (:mod:`.metricshttp`) renders :meth:`Metrics.exposition` on each
scrape.

With ``--workers N`` every worker process counts in prometheus-client's
*multiprocess mode*: values live in per-process files of one directory
that the parent makes new for each run before it forks (see
:mod:`.multiproc`), and a scrape, answered by whichever worker accepts it,
sums the files of every process. A worker that dies keeps its counters
(they are totals, and must not go backwards); its open-sessions gauge is
dropped by the parent, as its sessions died with it.

Label sets are bounded: ``command`` takes the command table's verbs (a
client's made-up verb counts as ``unknown``), ``error`` the storage error
classes, ``user`` the accounts that logged in, capped at
``metrics_max_users`` distinct names per process (more count as ``_other``)
and switched off altogether by ``--no-metrics-per-user``.
"""

from __future__ import annotations

import asyncio
import os
import threading

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from fileferry.observability import events as seen
from fileferry.observability.multiproc import MULTIPROC_ENV
from fileferry.observability.xferlog import FILE_TRANSFERS

__all__ = ["Metrics"]

#: Transfer duration buckets, seconds: a small file on a LAN to a large one over a WAN.
TRANSFER_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
_OTHER_USER = "_other"
#: Seconds at most between a command and its appearance in ``/metrics``.
FLUSH_EVERY = 1.0
_LOGIN_RESULTS = {
    seen.LoginSucceeded: "success",
    seen.LoginFailed: "failure",
    seen.LoginRefused: "refused",
}
_TLS_RESULTS = {
    seen.TLSEstablished: "ok",
    seen.TLSFailed: "failed",
    seen.TLSRefused: "refused",
}


def _multiprocess() -> bool:
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class Metrics:
    """Counters of one server process, fed by its session events.

    ``backend``: the storage backend's name (the scheme of ``root``), the
    label of storage errors.
    """

    #: Per-command and storage-error events too (see dispatch.py).
    wants_detail = True

    def __init__(
        self, *, backend: str = "file", per_user: bool = True, max_users: int = 1000
    ) -> None:
        # No ``*_created`` series: multiprocess mode has none, so one process
        # and several expose the same names (and Prometheus does not need them).
        disable_created_metrics()
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) if _multiprocess() else None
        # In multiprocess mode the values are in files, summed at scrape time
        # by a MultiProcessCollector: registering them too would count twice.
        registry = None if self.multiprocess_dir else CollectorRegistry(auto_describe=True)
        self.registry = registry
        self.backend = backend
        self.per_user = per_user
        self.max_users = max_users
        self._users: set[str] = set()
        user = ("user",) if per_user else ()
        r = {"registry": registry}
        self.sessions = Gauge(
            "fileferry_sessions", "Control connections open.", multiprocess_mode="livesum", **r
        )
        self.connections = Counter("fileferry_connections", "Control connections accepted.", **r)
        self.logins = Counter("fileferry_logins", "Login attempts by result.", ["result"], **r)
        self.bans = Counter("fileferry_bans", "Client addresses banned for failed logins.", **r)
        self.commands = Counter(
            "fileferry_commands",
            "Commands by verb and reply class.",
            ["command", "reply_class"],
            **r,
        )
        self.upload_bytes = Counter(
            "fileferry_upload_bytes", "Bytes received in file uploads.", user, **r
        )
        self.download_bytes = Counter(
            "fileferry_download_bytes", "Bytes sent in file downloads.", user, **r
        )
        self.upload_files = Counter(
            "fileferry_upload_files", "File uploads completed (226).", user, **r
        )
        self.download_files = Counter(
            "fileferry_download_files", "File downloads completed (226).", user, **r
        )
        self.transfer_seconds = Histogram(
            "fileferry_transfer_seconds",
            "Duration of completed file transfers.",
            ["direction"],
            buckets=TRANSFER_BUCKETS,
            **r,
        )
        self.tls = Counter(
            "fileferry_tls_handshakes",
            "TLS handshakes by result: AUTH TLS, implicit FTPS and PROT P data connections.",
            ["result"],
            **r,
        )
        self.storage_errors = Counter(
            "fileferry_storage_errors",
            "Storage operations that failed, by backend and error.",
            ["backend", "error"],
            **r,
        )
        self._command_children: dict[tuple[str, int], object] = {}
        #: Commands counted and not yet published: (verb, reply class) -> count.
        self._pending: dict[tuple[str, int], int] = {}
        self._pending_lock = threading.Lock()  # ServerThread workers share one
        self._flush_due = False
        # Known label values exist from the start, at 0, so that a rate() over
        # the first failure is not computed from nothing.
        for result in _LOGIN_RESULTS.values():
            self.logins.labels(result)
        for result in _TLS_RESULTS.values():
            self.tls.labels(result)

    # --- the observer ------------------------------------------------------------

    def __call__(self, event: seen.SessionEvent) -> None:
        kind = type(event)
        if kind is seen.TransferFinished:
            self._transfer(event)  # type: ignore[arg-type]
        elif kind is seen.SessionOpened:
            self.sessions.inc()
            self.connections.inc()
        elif kind is seen.SessionClosed:
            # Its commands are published before the gauge drops: a scraper
            # that sees the session gone must also see all it did.
            self.flush_commands()
            self.sessions.dec()
        elif kind in _LOGIN_RESULTS:
            self.logins.labels(_LOGIN_RESULTS[kind]).inc()
        elif kind is seen.Banned:
            self.bans.inc()
        elif kind in _TLS_RESULTS:
            self.tls.labels(_TLS_RESULTS[kind]).inc()
        elif kind is seen.StorageFailed:
            self.storage_errors.labels(self.backend, event.error).inc()  # type: ignore[attr-defined]

    def count_tls(self, result: str) -> None:
        """A handshake that is no session event (implicit FTPS, a PROT P data connection)."""
        self.tls.labels(result).inc()

    def count_command(self, verb: str, code: int) -> None:
        """One command got its final reply: counted in a dictionary, published later.

        Called inline for every command (see dispatch.py), so it does the
        least it can: the prometheus-client counters (a lock each, and a
        file write in multiprocess mode) are updated by
        :meth:`flush_commands`, at the end of each session and at most
        :data:`FLUSH_EVERY` seconds after a command of a longer one.
        """
        key = (verb, code // 100)
        with self._pending_lock:
            pending = self._pending
            pending[key] = pending.get(key, 0) + 1
        if not self._flush_due:
            self._flush_due = True
            try:
                asyncio.get_running_loop().call_later(FLUSH_EVERY, self.flush_commands)
            except RuntimeError:  # not on a loop (a test calling directly)
                self.flush_commands()

    def flush_commands(self) -> None:
        """Publish the commands counted since the last flush."""
        with self._pending_lock:
            pending, self._pending = self._pending, {}
            self._flush_due = False
        children = self._command_children
        for key, count in pending.items():
            child = children.get(key)
            if child is None:
                verb, kind = key
                child = children[key] = self.commands.labels(verb or "unknown", f"{kind}xx")
            child.inc(count)  # type: ignore[attr-defined]

    def _transfer(self, event: seen.TransferFinished) -> None:
        self.count_command(event.command, event.reply_code)
        if event.command not in FILE_TRANSFERS:
            return  # a listing: counted as a command only
        upload = event.direction == "upload"
        moved = self.upload_bytes if upload else self.download_bytes
        files = self.upload_files if upload else self.download_files
        if self.per_user:
            user = self._user(event.origin.user)
            moved, files = moved.labels(user), files.labels(user)
        if event.bytes:
            moved.inc(event.bytes)
        if event.reply_code == 226:
            files.inc()
            self.transfer_seconds.labels(event.direction).observe(event.seconds)

    def _user(self, name: str | None) -> str:
        """The ``user`` label: the account name, within the cap."""
        if name is None:
            return "-"
        users = self._users
        if name in users:
            return name
        if len(users) >= self.max_users:
            return _OTHER_USER
        users.add(name)
        return name

    # --- the exposition -----------------------------------------------------------

    def exposition(self) -> bytes:
        """The text a scrape gets: this process's metrics, or every worker's summed."""
        if self.multiprocess_dir is not None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, self.multiprocess_dir)
            return generate_latest(registry)
        assert self.registry is not None
        return generate_latest(self.registry)

    def __repr__(self) -> str:
        mode = f"multiprocess in {self.multiprocess_dir}" if self.multiprocess_dir else "in memory"
        return f"Metrics({mode})"
