"""Session caps and bans shared through PostgreSQL, answered from a local mirror.

The server asks these limits synchronously, on every connection and every
login (see :mod:`fileferry.limits.interfaces`), so they never wait for the
database. A :class:`Cluster` keeps, in this process:

* its own counts (sessions per client key, logged-in sessions per account
  name), exact, changed in place by admit/release;
* a **mirror** of what every other live instance counts, and of the bans in
  force, which one background thread refreshes every ``interval`` seconds
  (a quarter of the lease, at most 0.5 s);
* queues of what to **write behind**: the counts that changed (written as
  absolute figures, so a lost write is repaired by the next one) and the
  failed logins to score.

The same thread renews this instance's lease and, now and then, deletes the
rows of instances whose lease ran out long ago.

**Staleness bound.** A ban or a count made on another node reaches this one
within ``interval`` plus :data:`MIN_GAP` and two round trips (its write,
woken at once, then our next read): 0.55 s and a few milliseconds by
default. A failed login is scored in the database at once (the thread is
woken), and the node where it happened also scores it
locally, exactly as a single node does, so 10 failures on one node ban at
the 10th; failures spread over nodes ban in the database, everywhere within
the bound. Per-address and per-account caps are counted across the cluster;
two logins that race through different nodes within the bound can both get
the last slot (the cap is then exceeded by those few, never more). The
total cap, ``max_sessions``, stays per node: it protects the node's own
sockets and memory.

**Lifts.** An operator's lift (the web admin) ends the ban on the node
that lifts it at once; its write (clear the key's row, stamp ``lifted``) is
queued for the thread and woken like a failure. Every node polls for lifts
newer than the last it saw and ends its own local ban of the key too, so a
lift holds on every node within the same bound. Until written, a lifted
key is kept out of the mirror, so a refresh already in flight cannot bring
the ban back.

**Leases.** Every instance renews its ``fileferry_nodes`` row; readers
count the sessions and reservations of live instances only. A node killed
with -9 therefore stops counting ``lease_time`` seconds after its last
renewal at the latest; nothing waits for a sweep. If the database is
unreachable the node keeps serving from the last mirror (its own counts are
always exact) and catches up when it comes back: its counts are rewritten
whole, its lease re-registered if it lapsed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import psycopg

from fileferry.limits.interfaces import Ban
from fileferry.limits.local import TOO_MANY, Defender, ban_reason
from fileferry.limits.pgschema import migrate

if TYPE_CHECKING:
    from fileferry.limits.interfaces import _BanSettings

log = logging.getLogger("fileferry.limits")

#: Session counts by kind: per client key ("a") and per account name ("u").
ADDRESS, ACCOUNT = "a", "u"
#: Seconds to wait for the database to answer a connect.
CONNECT_TIMEOUT = 10
#: Every this many refreshes, one sweep of expired instances and old bans.
SWEEP_EVERY = 20
#: Lifts remembered for the seam between two looks (a flood of lifts keeps the newest).
MAX_LIFTS = 10_000
#: Seconds between two writes at least: a burst of connections is one write.
MIN_GAP = 0.05

_NOW = "extract(epoch FROM clock_timestamp())::float8"


def refresh_interval(lease: float) -> float:
    """How often an instance renews its lease and refreshes its mirror."""
    return min(0.5, lease / 4)


class Cluster:
    """This instance's share of the cluster: its lease, counts, mirror and writer.

    ``url``: the libpq URL of the shared database. ``node``: the node's name
    (``--node-name``), stored with the lease for operators. Connects and
    loads the mirror before returning, so the first connection a node
    accepts already sees the bans in force.
    """

    def __init__(
        self,
        url: str,
        node: str,
        *,
        lease: float,
        bans: _BanSettings,
    ) -> None:
        self.url = url
        self.node = node
        self.instance = f"{node}/{os.getpid()}/{secrets.token_hex(4)}"
        self.lease = lease
        self.interval = refresh_interval(lease)
        self.bans = bans
        self.lock = threading.Lock()
        self.local: dict[str, dict[str, int]] = {ADDRESS: {}, ACCOUNT: {}}
        self._dirty: set[tuple[str, str]] = set()
        self._failures: Counter[str] = Counter()
        #: Other live instances' counts, replaced whole at each refresh.
        self.others: dict[str, dict[str, int]] = {ADDRESS: {}, ACCOUNT: {}}
        #: Client key -> monotonic time its ban ends, replaced whole at each refresh.
        self.banned: dict[str, float] = {}
        #: Client key -> how many times it was banned (for the operators' list).
        self.ban_times: dict[str, int] = {}
        #: Keys an operator lifted here, not yet written.
        self._lifting: set[str] = set()
        #: Keys lifted on any node since the seam last looked, and a count of them
        #: (one integer compare on the login path tells there is nothing new).
        self.lifted: list[str] = []
        self.lift_serial = 0
        #: The newest ``lifted`` stamp seen (database clock).
        self._lift_mark = 0.0
        self._wake = threading.Event()
        self._stopping = False
        self._ticks = 0
        self._failing = False
        self._conn: psycopg.Connection[Any] | None = self._connect()
        with self._conn.transaction():
            self._register(self._conn)
        row = self._conn.execute(f"SELECT {_NOW}").fetchone()
        self._lift_mark = float(row[0]) if row else 0.0  # older lifts ended nothing here
        self._refresh(self._conn)
        self._thread = threading.Thread(target=self._run, name="fileferry-cluster", daemon=True)
        self._thread.start()

    # -- what the seams call, on the event loop ---------------------------------

    def change(self, kind: str, key: str, delta: int) -> None:
        """Count ``delta`` more sessions of ``key``; written behind."""
        counts = self.local[kind]
        with self.lock:
            left = counts.get(key, 0) + delta
            if left > 0:
                counts[key] = left
            else:
                counts.pop(key, None)
            self._dirty.add((kind, key))
        if not self._wake.is_set():  # a flag read; set() takes a lock and notifies
            self._wake.set()

    def count(self, kind: str, key: str) -> int:
        """Sessions of ``key`` on every live instance, as last seen (ours exact)."""
        return self.local[kind].get(key, 0) + self.others[kind].get(key, 0)

    def failed(self, key: str) -> None:
        """Score one failed login of ``key`` in the database, at once."""
        with self.lock:
            self._failures[key] += 1
        self._wake.set()

    def lift(self, key: str) -> None:
        """End ``key``'s ban cluster-wide: out of the mirror now, in the database soon."""
        with self.lock:
            self._lifting.add(key)
            self._failures.pop(key, None)  # forgotten with the ban
            self.banned.pop(key, None)
            self.ban_times.pop(key, None)
        self._wake.set()

    def take_lifts(self) -> list[str]:
        """The keys lifted on any node since the last call (for the seam's local bans)."""
        with self.lock:
            lifted, self.lifted = self.lifted, []
        return lifted

    def close(self) -> None:
        """Stop the writer, score what is queued, and give the lease up (frees its rows)."""
        self._stopping = True
        self._wake.set()
        self._thread.join(30)
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            with contextlib.suppress(psycopg.Error):
                self._write_lifts(conn)
                self._score(conn)
                conn.execute("DELETE FROM fileferry_nodes WHERE instance = %s", (self.instance,))
        finally:
            conn.close()

    # -- the background thread ---------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=f"fileferry limits {self.node}",
        )
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _register(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            "INSERT INTO fileferry_nodes (instance, node, pid, expires)"
            " VALUES (%s, %s, %s, now() + make_interval(secs => %s))"
            " ON CONFLICT (instance) DO UPDATE SET expires = EXCLUDED.expires",
            (self.instance, self.node, os.getpid(), self.lease),
        )

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            if self._stopping:
                return
            time.sleep(MIN_GAP)  # let a burst of changes gather into one write
            self._wake.clear()
            if self._stopping:
                return
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                self._tick(self._conn)
                if self._failing:
                    log.warning("shared limits database reachable again")
                self._failing = False
            except Exception as exc:
                if not self._failing:
                    log.warning(
                        "shared limits database unreachable; serving from the last figures: %s",
                        str(exc).strip().splitlines()[0] if str(exc).strip() else exc,
                    )
                self._failing = True
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        self._conn.close()
                    self._conn = None
                self._wake.wait(min(2.0, self.lease / 2))

    def _tick(self, conn: psycopg.Connection[Any]) -> None:
        renewed = conn.execute(
            "UPDATE fileferry_nodes SET expires = now() + make_interval(secs => %s)"
            " WHERE instance = %s",
            (self.lease, self.instance),
        )
        with self.lock:
            if renewed.rowcount == 0:  # swept while we could not renew: come back whole
                self._dirty.update((k, key) for k in self.local for key in self.local[k])
            changes = [(k, key, self.local[k].get(key, 0)) for k, key in self._dirty]
            self._dirty.clear()
        try:
            with conn.transaction():
                if renewed.rowcount == 0:
                    self._register(conn)
                self._write(conn, changes)
        except BaseException:
            with self.lock:
                self._dirty.update((k, key) for k, key, _ in changes)
            raise
        self._write_lifts(conn)  # first: failures queued after a lift count afresh
        self._score(conn)
        self._refresh(conn)
        self._ticks += 1
        if self._ticks % SWEEP_EVERY == 0:
            self._sweep(conn)

    def _write(self, conn: psycopg.Connection[Any], changes: list[tuple[str, str, int]]) -> None:
        upserts = [(self.instance, k, key, n) for k, key, n in changes if n > 0]
        deletes = [(self.instance, k, key) for k, key, n in changes if n <= 0]
        with conn.cursor() as cur:
            if upserts:
                cur.executemany(
                    "INSERT INTO fileferry_sessions (instance, kind, key, count)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (instance, kind, key)"
                    " DO UPDATE SET count = EXCLUDED.count",
                    upserts,
                )
            if deletes:
                cur.executemany(
                    "DELETE FROM fileferry_sessions WHERE instance = %s AND kind = %s AND key = %s",
                    deletes,
                )

    def _score(self, conn: psycopg.Connection[Any]) -> None:
        """Add the queued failures to each key's record; ban where they reach the threshold.

        The same rule as :class:`~fileferry.limits.local.Defender`, on the
        database's clock, in a transaction per key (the row lock orders
        nodes scoring the same address).
        """
        with self.lock:
            queued, self._failures = self._failures, Counter()
        settings = self.bans
        try:
            for key, n in queued.items():
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO fileferry_bans (key) VALUES (%s) ON CONFLICT (key) DO NOTHING",
                        (key,),
                    )
                    row = conn.execute(
                        f"SELECT failures, bans, {_NOW} FROM fileferry_bans"
                        " WHERE key = %s FOR UPDATE",
                        (key,),
                    ).fetchone()
                    assert row is not None
                    failures, bans, now = row
                    recent = [t for t in failures if now - t <= settings.window] + [now] * n
                    until = None
                    if len(recent) >= settings.threshold:
                        bans += 1
                        length = min(settings.time * 2 ** (bans - 1), settings.max_time)
                        until, recent = now + length, []
                    conn.execute(
                        "UPDATE fileferry_bans SET failures = %s, bans = %s, seen = %s,"
                        " until = COALESCE(%s, until) WHERE key = %s",
                        (recent[-settings.threshold :], bans, now, until, key),
                    )
                queued[key] = 0
        except BaseException:
            with self.lock:
                self._failures.update(+queued)  # scored later, not lost
            raise

    def _write_lifts(self, conn: psycopg.Connection[Any]) -> None:
        """Clear the lifted keys' rows: no ban, no failures, escalation back to the start."""
        with self.lock:
            keys = sorted(self._lifting)
        for key in keys:
            conn.execute(
                f"UPDATE fileferry_bans SET failures = '{{}}', bans = 0, until = 0,"
                f" lifted = {_NOW}, seen = {_NOW} WHERE key = %s",
                (key,),
            )
            with self.lock:  # written: a refresh may show the key again if re-banned
                self._lifting.discard(key)

    def _refresh(self, conn: psycopg.Connection[Any]) -> None:
        now = time.monotonic()
        banned: dict[str, float] = {}
        times: dict[str, int] = {}
        for key, left, count in conn.execute(
            f"SELECT key, until - {_NOW}, bans FROM fileferry_bans WHERE until > {_NOW}"
        ):
            banned[key], times[key] = now + left, int(count)
        lifts = conn.execute(
            "SELECT key, lifted FROM fileferry_bans WHERE lifted > %s", (self._lift_mark,)
        ).fetchall()
        others: dict[str, dict[str, int]] = {ADDRESS: {}, ACCOUNT: {}}
        for kind, key, n in conn.execute(
            "SELECT s.kind, s.key, SUM(s.count)::int FROM fileferry_sessions s"
            " JOIN fileferry_nodes n ON n.instance = s.instance"
            " WHERE n.expires > now() AND s.instance <> %s GROUP BY s.kind, s.key",
            (self.instance,),
        ):
            others[kind][key] = n
        with self.lock:
            for key in self._lifting:
                banned.pop(key, None)
            if lifts:
                self._lift_mark = max(float(stamp) for _, stamp in lifts)
                self.lifted.extend(key for key, _ in lifts)
                del self.lifted[:-MAX_LIFTS]
                self.lift_serial += 1
            self.banned, self.ban_times, self.others = banned, times, others

    def _sweep(self, conn: psycopg.Connection[Any]) -> None:
        """Forget instances dead for a whole lease more, and bans long over."""
        conn.execute(
            "DELETE FROM fileferry_nodes WHERE expires < now() - make_interval(secs => %s)",
            (self.lease,),
        )
        conn.execute(
            f"DELETE FROM fileferry_bans WHERE until < {_NOW} - %s AND seen < {_NOW} - %s",
            (self.bans.max_time, self.bans.window),
        )


class ClusterSessions:
    """:class:`~fileferry.limits.interfaces.SessionSlots`: per-address caps across nodes."""

    def __init__(self, cluster: Cluster, max_total: int, max_per_client: int) -> None:
        self._cluster = cluster
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.total = 0

    def admit(self, key: str) -> str | None:
        if self.total >= self.max_total:
            return TOO_MANY
        if self._cluster.count(ADDRESS, key) >= self.max_per_client:
            return "Too many connections from your address; try again later."
        self.total += 1
        self._cluster.change(ADDRESS, key, 1)
        return None

    def release(self, key: str) -> None:
        if key not in self._cluster.local[ADDRESS]:
            return  # not counted
        self.total -= 1
        self._cluster.change(ADDRESS, key, -1)

    def count(self, key: str) -> int:
        """Sessions from ``key`` on every node, as this node last saw them."""
        return self._cluster.count(ADDRESS, key)


class ClusterAccounts:
    """:class:`~fileferry.limits.interfaces.AccountSlots`: ``max_sessions`` across nodes."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def acquire(self, name: str, max_sessions: int) -> bool:
        if max_sessions and self._cluster.count(ACCOUNT, name) >= max_sessions:
            return False
        self._cluster.change(ACCOUNT, name, 1)
        return True

    def release(self, name: str) -> None:
        if name in self._cluster.local[ACCOUNT]:
            self._cluster.change(ACCOUNT, name, -1)

    def sessions(self, name: str) -> int:
        return self._cluster.count(ACCOUNT, name)


class ClusterBans:
    """:class:`~fileferry.limits.interfaces.BanList`: this node's own scoring, plus the
    database's, which sees the failures of every node."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        bans = cluster.bans
        self._local = Defender(bans.threshold, bans.window, bans.time, bans.max_time)
        self._reason = ban_reason(bans.threshold, bans.window)
        self._lifts_seen = 0

    def _catch_up(self) -> None:
        """End the local bans of keys lifted on any node since the last look."""
        serial = self._cluster.lift_serial
        if serial != self._lifts_seen:
            self._lifts_seen = serial
            for key in self._cluster.take_lifts():
                self._local.lift(key)

    def banned_for(self, key: str) -> float:
        if self._cluster.lift_serial != self._lifts_seen:
            self._catch_up()
        mine = self._local.banned_for(key)
        until = self._cluster.banned.get(key)
        theirs = until - time.monotonic() if until is not None else 0.0
        return max(mine, theirs, 0.0)

    def record_failure(self, key: str) -> bool:
        self._catch_up()
        self._cluster.failed(key)
        return self._local.record_failure(key)

    def bans(self) -> list[Ban]:
        """This node's own bans and the database's (as last mirrored), longest first."""
        self._catch_up()
        found = {ban.key: ban for ban in self._local.bans()}
        now = time.monotonic()
        cluster = self._cluster
        with cluster.lock:
            mirrored = [
                (k, until - now, cluster.ban_times.get(k, 1)) for k, until in cluster.banned.items()
            ]
        for key, left, times in mirrored:
            mine = found.get(key)
            if left > 0 and (mine is None or mine.left < left):
                found[key] = Ban(key, left, max(times, mine.times if mine else 0), self._reason)
        return sorted(found.values(), key=lambda b: -b.left)

    def lift(self, key: str) -> bool:
        """End ``key``'s ban here at once and on every node within the staleness bound."""
        self._catch_up()
        was = self.banned_for(key) > 0
        self._local.lift(key)
        if was:  # a write for nothing could land after a newer ban, and end it
            self._cluster.lift(key)
        return was
