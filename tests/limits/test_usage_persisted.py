"""Quota figures survive a restart: no walk when the usage file can be trusted.

The staleness rule (``fileferry/limits/usagefile.py``): a figure is reused
only if written by a clean close (no session of the account left) and
younger than ``MAX_AGE``; otherwise the tree is walked again.
"""

from __future__ import annotations

import asyncio
import ftplib
import io
import logging
from pathlib import Path

import pytest

from fileferry import config
from fileferry.limits.interfaces import Figure, QuotaLedger
from fileferry.limits.ledger import LocalLedger
from fileferry.limits.sharedquota import SharedLedger, quota_table
from fileferry.limits.stripes import SectionLocks
from fileferry.limits.usagefile import MAX_AGE, UsageFile
from fileferry.server.thread import ServerThread
from fileferry.users.base import ALL_PERMISSIONS, Account, StoredUser
from fileferry.users.passwords import hash_password
from fileferry.users.sqlite import SQLiteUserStore

PASSWORD = "s3cret-pw"


def write_db(path: Path, account: Account) -> Path:
    async def fill() -> None:
        store = SQLiteUserStore(str(path))
        try:
            await store.add(StoredUser(account, hash_password(PASSWORD)))
        finally:
            await store.close()

    asyncio.run(fill())
    return path


class Walks:
    def __init__(self, figure: Figure) -> None:
        self.figure = figure
        self.calls = 0

    async def __call__(self) -> Figure:
        self.calls += 1
        return self.figure


def _local(path: Path, clock: list[float]) -> QuotaLedger:
    return LocalLedger(UsageFile(str(path), clock=lambda: clock[0]))


def _shared(path: Path, clock: list[float]) -> QuotaLedger:
    return SharedLedger(
        quota_table(8, 1), SectionLocks(2), 0, 1, UsageFile(str(path), clock=lambda: clock[0])
    )


@pytest.fixture(params=[_local, _shared], ids=["local", "shared"])
def make(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    clock = [1_000_000.0]
    path = tmp_path / "users.db.usage"

    def build() -> QuotaLedger:
        return request.param(path, clock)  # type: ignore[no-any-return]

    build.clock = clock  # type: ignore[attr-defined]
    return build


async def _session(ledger: QuotaLedger, walks: Walks, change: int = 0, leave: bool = True) -> None:
    account = await ledger.open("alice", walks)
    if change:
        async with account.section():
            await account.apply(change, 1)
    if leave:
        account.drop()


def test_a_clean_close_is_trusted_at_the_next_start(make) -> None:  # type: ignore[no-untyped-def]
    async def body() -> None:
        first = make()
        walks = Walks(Figure(100, 1))
        await _session(first, walks, change=50)
        await first.close()
        assert walks.calls == 1
        second = make()
        await _session(second, walks)
        account = await second.open("alice", walks)
        assert walks.calls == 1 and account.usage == (150, 2)  # no walk, figure followed
        await second.close()

    asyncio.run(body())


def test_a_figure_left_while_sessions_were_open_is_walked_again(make) -> None:  # type: ignore[no-untyped-def]
    async def body() -> None:
        first = make()
        await _session(first, Walks(Figure(100, 1)), change=50, leave=False)
        await first.close()  # as if the server died with alice logged in
        walks = Walks(Figure(90, 1))
        second = make()
        account = await second.open("alice", walks)
        assert walks.calls == 1 and account.usage == (90, 1)
        await second.close()

    asyncio.run(body())


def test_an_old_figure_is_walked_again(make) -> None:  # type: ignore[no-untyped-def]
    async def body() -> None:
        first = make()
        await _session(first, Walks(Figure(100, 1)))
        await first.close()
        make.clock[0] += MAX_AGE + 1
        walks = Walks(Figure(7, 1))
        second = make()
        account = await second.open("alice", walks)
        assert walks.calls == 1 and account.usage == (7, 1)
        await second.close()

    asyncio.run(body())


def test_an_older_write_never_replaces_a_newer_one(tmp_path: Path) -> None:
    records = UsageFile(str(tmp_path / "u"))
    records.save("k", Figure(2, 2), clean=True, stamp=20)
    records.save("k", Figure(1, 1), clean=True, stamp=10)  # queued late by another worker
    assert records.load("k") == (2, 2)
    records.close()


def test_an_unusable_usage_file_means_a_walk_not_a_refused_login(tmp_path: Path) -> None:
    async def body() -> None:
        ledger = LocalLedger(UsageFile(str(tmp_path / "missing-dir" / "users.db.usage")))
        walks = Walks(Figure(5, 1))
        account = await ledger.open("alice", walks)
        account.drop()
        await ledger.close()
        assert walks.calls == 1 and account.usage == (5, 1)

    asyncio.run(body())


def test_a_restarted_server_does_not_walk_and_keeps_the_figure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """End to end: same user database, two server runs, real clients."""
    home = tmp_path / "homes" / "alice"
    home.mkdir(parents=True)
    (home / "old.bin").write_bytes(b"o" * 300)
    account = Account("alice", str(home), ALL_PERMISSIONS, quota_bytes=1000)
    db = write_db(tmp_path / "users.db", account)
    values = {
        "root": str(home.parent),
        "port": 0,
        "db": str(db),
        "anonymous": False,
        "login_failure_delay": 0,
        "idle_timeout": 30,
        "data_timeout": 30,
    }
    caplog.set_level(logging.INFO, logger="fileferry.accounts")

    def run(upload: bytes) -> tuple[str, str]:
        srv = ServerThread(config.build(values)).start()
        try:
            f = ftplib.FTP(timeout=20)
            f.connect(*srv.address)
            f.login("alice", PASSWORD)
            f.storbinary("STOR new.bin", io.BytesIO(upload))
            avbl, quota = f.sendcmd("AVBL"), f.sendcmd("SITE QUOTA")
            f.quit()
        finally:
            srv.stop()
        return avbl, quota

    assert run(b"n" * 100)[0] == "213 600"
    assert sum("quota usage of alice" in r.getMessage() for r in caplog.records) == 1
    assert (tmp_path / "users.db.usage").exists()
    # The second run replaces new.bin (100 -> 250 bytes) and walks nothing.
    avbl, quota = run(b"m" * 250)
    assert avbl == "213 450" and "550 used of 1000" in quota
    assert sum("quota usage of alice" in r.getMessage() for r in caplog.records) == 1
    assert sum(p.stat().st_size for p in home.iterdir()) == 550
