"""PostgresUserStore: a schema several nodes share, migrations under a lock, credentials.

The admin operations and the login contract run on PostgreSQL with the
other stores (``test_userstore_contract.py``, ``test_sqlite_userstore.py``);
these are what only a database server shared by several nodes has.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from fileferry.users.base import Account, StoredUser, UserStoreError
from fileferry.users.passwords import hash_password
from fileferry.users.pgurl import redact
from fileferry.users.postgres import COMPONENT, SCHEMA_VERSION, PostgresUserStore
from services.postgres import SUPERUSER, PostgresServer


def run(coro):
    return asyncio.run(coro)


def test_a_password_changed_on_one_node_is_in_force_at_the_next_login_on_every_node(
    pg_url: str,
) -> None:
    node_a, node_b = PostgresUserStore(pg_url), PostgresUserStore(pg_url)
    try:

        async def body() -> None:
            await node_a.add(StoredUser(Account("alice", "/srv/alice"), hash_password("old")))
            # Node B logs alice in: its cache of successful checks now holds "old".
            assert await node_b.authenticate("alice", "old") is not None
            assert await node_b.authenticate("alice", "old") is not None
            await node_a.set_password("alice", hash_password("new"))
            assert await node_b.authenticate("alice", "old") is None
            assert await node_b.authenticate("alice", "new") is not None
            # A disabled account, changed on B, is refused on A at once.
            account = (await node_b.get("alice")).account
            await node_b.update(Account(account.name, account.home, disabled=True))
            got = await node_a.authenticate("alice", "new")
            assert got is not None and got.refusal("127.0.0.1", 0) == "Account disabled."

        run(body())
    finally:
        run(node_a.close())
        run(node_b.close())


def test_nodes_starting_at_once_migrate_exactly_once(postgres: PostgresServer) -> None:
    url = postgres.database()
    barrier = threading.Barrier(6)
    stores: list[PostgresUserStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            stores.append(PostgresUserStore(url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == [] and len(stores) == 6
        assert {run(s.schema_version()) for s in stores} == {SCHEMA_VERSION}
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT version FROM fileferry_schema WHERE component = %s ORDER BY version",
                (COMPONENT,),
            ).fetchall()
            assert [v for (v,) in rows] == list(range(1, SCHEMA_VERSION + 1))
            conn.execute(
                "INSERT INTO fileferry_schema VALUES (%s, %s, 0)", (COMPONENT, SCHEMA_VERSION + 1)
            )
        with pytest.raises(UserStoreError, match="newer"):
            PostgresUserStore(url)
    finally:
        for s in stores:
            run(s.close())


def test_errors_are_clear_and_never_show_the_password(postgres: PostgresServer) -> None:
    wrong = (
        f"postgresql://{SUPERUSER}:not-the-{postgres.password}@127.0.0.1:{postgres.port}/postgres"
    )
    with pytest.raises(UserStoreError) as info:
        PostgresUserStore(wrong)
    message = str(info.value)
    assert "password authentication failed" in message
    assert postgres.password not in message and "not-the" not in message
    with pytest.raises(UserStoreError, match="nowhere"):
        PostgresUserStore(postgres.url("nowhere"))
    assert redact(postgres.url("db")) == f"postgresql://{SUPERUSER}@127.0.0.1:{postgres.port}/db"
    assert "***" in redact("postgres://h/db?password=x&sslmode=off")


def test_closed_store_says_so(pg_url: str) -> None:
    store = PostgresUserStore(pg_url)
    run(store.close())
    with pytest.raises(UserStoreError, match="closed"):
        run(store.list())


def _count_users(url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Open the store in a fresh process, so libpq reads the environment given."""
    code = (
        "import asyncio, sys\n"
        "from fileferry.users.postgres import PostgresUserStore\n"
        "s = PostgresUserStore(sys.argv[1])\n"
        "print(len(asyncio.run(s.list())))\n"
        "asyncio.run(s.close())\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run(
        [sys.executable, "-c", code, url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
    )


def test_the_password_may_come_from_pgpassword_or_pgpass(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.database()
    bare = url.replace(f":{postgres.password}@", "@")
    assert postgres.password not in bare
    refused = _count_users(bare, {"HOME": str(tmp_path)})
    assert refused.returncode != 0 and "password" in refused.stderr
    assert postgres.password not in refused.stderr
    by_env = _count_users(bare, {"PGPASSWORD": postgres.password, "HOME": str(tmp_path)})
    assert by_env.returncode == 0, by_env.stderr
    assert by_env.stdout.strip() == "0"
    pgpass = tmp_path / ".pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres.port}:*:{SUPERUSER}:{postgres.password}\n")
    pgpass.chmod(0o600)
    by_file = _count_users(bare, {"HOME": str(tmp_path)})
    assert by_file.returncode == 0, by_file.stderr
    assert by_file.stdout.strip() == "0"
