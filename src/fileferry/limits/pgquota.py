"""Quota figures in PostgreSQL: reserved in the database before bytes are accepted.

One ``fileferry_quota`` row per account holds its figure; every upload in
flight, on any node, holds a ``fileferry_reservations`` row. A reservation
is granted by a transaction that locks the account's row, adds up the live
reservations of every node, and grants only what fits, so two uploads
through two nodes can never both take the last megabyte.

* **In steps, not per chunk.** :meth:`PgReservation.take` answers from the
  room already granted; only when a chunk would pass it does the upload
  await :meth:`~PgReservation.extend`, which asks for what it needs plus a
  step (:data:`STEP`, shrunk to a quarter of what is left when the account
  is nearly full, so one upload does not starve the others). Far from the
  limit that is one round trip per 8 MiB; at the limit, exact.
* **Settled on commit, let go on abort.** ``settle`` applies the exact
  change and deletes the reservation in one transaction; ``release``
  deletes it in the background (it runs in ``finally`` blocks).
* **Leases.** A reservation belongs to its instance's lease
  (:mod:`fileferry.limits.pgsync`): the sums count only live instances, so
  room held by a node killed with -9 is free again once its lease expires.
* **The section** (look, change, settle: commit, delete, rename) is an
  advisory lock per account, held in a transaction on one connection; the
  steps inside reuse that connection, so a section needs one connection,
  and this node's sessions queue on a local lock before asking for it.

Queries run on the cluster's threads with connections from a psycopg-pool
:class:`ConnectionPool` (usable from any event loop). Not
``decides_now``: uploads written from TLS pump threads keep the loop's path
(splices keep theirs, they reserve from the loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import zlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from fileferry.errors import QuotaExceeded, StorageUnavailable
from fileferry.limits.interfaces import Figure, Measure
from fileferry.limits.ledger import OVER_QUOTA, LedgerBase
from fileferry.limits.pgsync import CONNECT_TIMEOUT, Cluster

_T = TypeVar("_T")
log = logging.getLogger("fileferry.limits")

#: Room granted beyond what an upload needs, per round trip.
STEP = 8 * 1024 * 1024
#: Connections (and threads) for quota steps per instance.
POOL_SIZE = 8
#: First key of the advisory locks of quota sections ("ffqs").
SECTION_LOCK = 0x66667173 - 2**31

Conn = psycopg.Connection[Any]
#: The connection of the section the current task is in, if any.
_in_section: contextvars.ContextVar[tuple[PgAccount, Conn] | None] = contextvars.ContextVar(
    "fileferry_quota_section", default=None
)

_LIVE = (
    "SELECT COALESCE(SUM(r.bytes), 0)::bigint, COALESCE(SUM(r.files), 0)::bigint"
    " FROM fileferry_reservations r JOIN fileferry_nodes n ON n.instance = r.instance"
    " WHERE r.key = %s AND n.expires > now() AND r.id <> %s"
)


class PgReservation:
    """One upload in flight: the room its row holds in the database."""

    decides_now = False

    def __init__(self, account: PgAccount, rid: int, new: bool) -> None:
        self._account = account
        self.id = rid
        self.new = new
        self.granted = 0
        self.open = True

    def take(self, growth: int) -> bool:
        return not self.open or growth <= self.granted or not self._account.quota_bytes

    async def extend(self, growth: int) -> None:
        if self.take(growth):
            return
        self.granted = await self._account.grant(self, growth)

    async def settle(self, bytes_change: int, files_change: int) -> None:
        if not self.open:
            return
        self.open = False
        await self._account.change(bytes_change, files_change, self.id)

    def release(self) -> None:
        if self.open:
            self.open = False
            self._account.forget(self.id)


class PgAccount:
    """One account's figure: the database's, with a copy of the last one seen."""

    def __init__(self, ledger: PgLedger, key: str, figure: Figure) -> None:
        self._ledger = ledger
        self.key = key
        self.figure = figure
        self.held = (0, 0)  # the other uploads' room, last seen
        self.uses = 0
        self.quota_bytes = 0
        self.quota_files = 0
        self._lock = asyncio.Lock()
        self._lock_id = zlib.crc32(key.encode("utf-8", "surrogateescape")) - 2**31

    @property
    def usage(self) -> Figure:
        return self.figure

    def available_bytes(self) -> int | None:
        if not self.quota_bytes:
            return None
        return max(self.quota_bytes - self.figure.bytes - self.held[0], 0)

    def available_files(self) -> int | None:
        if not self.quota_files:
            return None
        return max(self.quota_files - self.figure.files - self.held[1], 0)

    def _look(self, conn: Conn, rid: int) -> tuple[int, int, int, int]:
        """Lock the figure's row; (bytes, files, others' bytes, others' files)."""
        row = conn.execute(
            "SELECT bytes, files FROM fileferry_quota WHERE key = %s FOR UPDATE", (self.key,)
        ).fetchone()
        if row is None:  # removed by hand: start again from our copy
            conn.execute(
                "INSERT INTO fileferry_quota (key, bytes, files) VALUES (%s, %s, %s)",
                (self.key, *self.figure),
            )
            row = tuple(self.figure)
        held = conn.execute(_LIVE, (self.key, rid)).fetchone()
        assert held is not None
        self.figure, self.held = Figure(int(row[0]), int(row[1])), (int(held[0]), int(held[1]))
        return int(row[0]), int(row[1]), int(held[0]), int(held[1])

    async def begin(self, new: bool, append: bool) -> PgReservation:
        qb, qf, instance = self.quota_bytes, self.quota_files, self._ledger.cluster.instance

        def start(conn: Conn) -> int:
            used, files, held_bytes, held_files = self._look(conn, 0)
            if new and qf and files + held_files >= qf:
                raise QuotaExceeded("File quota exceeded.")
            # Over quota already (e.g. lowered): only replacing uploads may start.
            if (new or append) and qb and used + held_bytes > qb:
                raise QuotaExceeded("Quota exceeded.")
            row = conn.execute(
                "INSERT INTO fileferry_reservations (instance, key, files)"
                " VALUES (%s, %s, %s) RETURNING id",
                (instance, self.key, int(new)),
            ).fetchone()
            assert row is not None
            return int(row[0])

        return PgReservation(self, await self._ledger.transaction(start), new)

    async def grant(self, hold: PgReservation, growth: int) -> int:
        """Room for ``growth`` (QuotaExceeded if it does not fit), plus a step if there is room."""
        qb, instance = self.quota_bytes, self._ledger.cluster.instance

        def extend(conn: Conn) -> int:
            used, _, held_bytes, _ = self._look(conn, hold.id)
            room = qb - used - held_bytes
            if growth > room:
                raise QuotaExceeded(OVER_QUOTA)
            granted = growth + min(STEP, (room - growth) // 4)
            conn.execute(
                "INSERT INTO fileferry_reservations (id, instance, key, bytes, files)"
                " VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET bytes = EXCLUDED.bytes",
                (hold.id, instance, self.key, granted, int(hold.new)),
            )
            return granted

        return await self._ledger.transaction(extend)

    async def change(self, bytes_change: int, files_change: int, rid: int = 0) -> None:
        def apply(conn: Conn) -> None:
            row = conn.execute(
                "UPDATE fileferry_quota SET bytes = bytes + %s, files = files + %s"
                " WHERE key = %s RETURNING bytes, files",
                (bytes_change, files_change, self.key),
            ).fetchone()
            if row is None:
                figure = Figure(self.figure.bytes + bytes_change, self.figure.files + files_change)
                conn.execute(
                    "INSERT INTO fileferry_quota (key, bytes, files) VALUES (%s, %s, %s)",
                    (self.key, *figure),
                )
                row = tuple(figure)
            if rid:
                conn.execute("DELETE FROM fileferry_reservations WHERE id = %s", (rid,))
            self.figure = Figure(int(row[0]), int(row[1]))

        await self._ledger.transaction(apply)

    async def apply(self, bytes_change: int, files_change: int) -> None:
        await self.change(bytes_change, files_change)

    def forget(self, rid: int) -> None:
        """An aborted upload's room: deleted behind (callers are ``finally`` blocks)."""
        self._ledger.behind("DELETE FROM fileferry_reservations WHERE id = %s", (rid,))

    @contextlib.asynccontextmanager
    async def section(self) -> AsyncIterator[None]:
        current = _in_section.get()
        if current is not None and current[0] is self:
            yield  # re-entered by the same task: already exclusive
            return
        async with self._lock:
            ledger = self._ledger
            opening = asyncio.ensure_future(ledger.run(self._open))
            try:
                conn = await asyncio.shield(opening)
            except BaseException:
                # Cancelled while the lock was awaited: hand the connection back once it comes.
                opening.add_done_callback(self._abandon)
                raise
            token = _in_section.set((self, conn))
            try:
                yield
            finally:
                _in_section.reset(token)
                # What ran inside reflects what was done on disk: always keep it.
                await asyncio.shield(ledger.run(lambda: ledger.give_back(conn)))

    def _open(self) -> Conn:
        """A connection in a transaction holding the account's advisory lock (waits for it)."""
        conn = self._ledger.take_connection()
        try:
            conn.execute("BEGIN")
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (SECTION_LOCK, self._lock_id))
        except BaseException:
            self._ledger.give_back(conn)
            raise
        return conn

    def _abandon(self, opening: asyncio.Future[Conn]) -> None:
        if not opening.cancelled() and opening.exception() is None:
            conn = opening.result()
            self._ledger.later(lambda: self._ledger.give_back(conn))

    def hold(self) -> bool:
        self.uses += 1
        return True

    def drop(self) -> None:
        if self.uses > 0:
            self.uses -= 1


class PgLedger(LedgerBase):
    """:class:`~fileferry.limits.interfaces.QuotaLedger` of a node sharing a database."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(None)
        self.cluster = cluster
        self._pool: ConnectionPool | None = ConnectionPool(
            cluster.url,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={
                "autocommit": True,
                "connect_timeout": CONNECT_TIMEOUT,
                "application_name": f"fileferry quota {cluster.node}",
            },
            timeout=CONNECT_TIMEOUT,
            name="fileferry-quota",
            check=ConnectionPool.check_connection,
            open=True,
        )
        self._threads = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="fileferry-quota")
        self._accounts: dict[str, PgAccount] = {}

    def _stamp(self) -> int:
        return 0  # no usage file: the database keeps the figures

    # -- running queries ------------------------------------------------------------

    async def run(self, fn: Callable[[], _T]) -> _T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._threads, fn)
        except RuntimeError as exc:  # executor shut down
            raise StorageUnavailable("the quota database is closed") from exc
        except PoolTimeout:
            raise StorageUnavailable("quota database: no connection available") from None
        except psycopg.Error as exc:
            log.warning("quota database: %s", str(exc).strip().splitlines()[0])
            raise StorageUnavailable("quota database unavailable") from None

    def take_connection(self) -> Conn:
        if self._pool is None:
            raise RuntimeError("closed")
        return self._pool.getconn()

    def give_back(self, conn: Conn) -> None:
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("COMMIT")  # an aborted transaction rolls back instead
        finally:
            if self._pool is not None:
                self._pool.putconn(conn)
            else:
                conn.close()

    async def transaction(self, body: Callable[[Conn], _T]) -> _T:
        """``body`` in a transaction: the current section's, or its own."""
        current = _in_section.get()
        if current is not None:
            conn = current[1]
            return await self.run(lambda: self._savepoint(conn, body))

        def own() -> _T:
            if self._pool is None:
                raise RuntimeError("closed")
            with self._pool.connection() as conn, conn.transaction():
                return body(conn)

        return await self.run(own)

    @staticmethod
    def _savepoint(conn: Conn, body: Callable[[Conn], _T]) -> _T:
        # A refusal inside the section (QuotaExceeded) must not poison its transaction.
        with conn.transaction():
            return body(conn)

    def later(self, job: Callable[[], object]) -> None:
        """Run ``job`` on a pool thread without waiting (ignored once closed)."""
        with contextlib.suppress(RuntimeError):
            self._threads.submit(job)

    def behind(self, sql: str, args: tuple[object, ...]) -> None:
        """Run ``sql`` soon, on a pool thread, without waiting (errors are logged)."""

        def job() -> None:
            if self._pool is None:
                return
            try:
                with self._pool.connection() as conn:
                    conn.execute(sql, args)  # type: ignore[arg-type]
            except Exception as exc:
                log.warning("quota database: %s", str(exc).strip().splitlines()[0])

        self.later(job)  # once shut down, the lease given up frees it anyway

    # -- QuotaLedger ------------------------------------------------------------------

    async def open(self, key: str, measure: Measure) -> PgAccount:
        account = self._accounts.get(key)
        if account is None:
            figure = await self._figure(key, measure)
            account = self._accounts.get(key)
            if account is None:
                account = self._accounts[key] = PgAccount(self, key, figure)
        account.hold()
        return account

    async def _load_or_measure(self, key: str, measure: Measure) -> Figure:
        """The database's figure; else walk the tree once, and the first node to store wins."""

        def load(conn: Conn) -> Figure | None:
            row = conn.execute(
                "SELECT bytes, files FROM fileferry_quota WHERE key = %s", (key,)
            ).fetchone()
            return None if row is None else Figure(int(row[0]), int(row[1]))

        found = await self.transaction(load)
        if found is not None:
            return found
        walked = await measure()

        def store(conn: Conn) -> Figure:
            conn.execute(
                "INSERT INTO fileferry_quota (key, bytes, files) VALUES (%s, %s, %s)"
                " ON CONFLICT (key) DO NOTHING",
                (key, *walked),
            )
            return load(conn) or walked

        return await self.transaction(store)

    async def close(self) -> None:
        threads = self._threads
        await asyncio.to_thread(threads.shutdown, wait=True)
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.close)
        await asyncio.to_thread(self.cluster.close)
