"""The UserStore contract, run against every store (static, SQLite and PostgreSQL).

Each test body is a coroutine run with ``asyncio.run``; the ``make_store``
fixture builds the same users in each store, so the same expectations hold.
"""

from __future__ import annotations

import asyncio

from userstorekit import MakeStore

from fileferry.users.base import Account, FolderRule, VirtualFolder

FULL = Account(
    name="alice",
    home="/srv/ftp/alice",
    permissions="elradfmwMTX",
    folder_permissions=(FolderRule("/archive", "elr"), FolderRule("/drop", "elw")),
    virtual_folders=(VirtualFolder("/shared", "/srv/shared", read_only=True),),
    quota_bytes=10 * 1024**3,
    quota_files=1000,
    max_sessions=3,
    upload_rate=1_000_000,
    download_rate=2_000_000,
    allowed_networks=("10.0.0.0/8", "2001:db8::/32"),
    expires=1924992000.0,
    disabled=False,
)
PLAIN = Account("bob", "/srv/ftp/bob")


def test_right_password_returns_the_account_with_every_field(make_store: MakeStore) -> None:
    store = make_store([(FULL, "s3cret"), (PLAIN, "pw")])
    assert asyncio.run(store.authenticate("alice", "s3cret")) == FULL
    assert asyncio.run(store.authenticate("bob", "pw")) == PLAIN


def test_wrong_password_unknown_user_and_empty_password_fail(make_store: MakeStore) -> None:
    store = make_store([(FULL, "s3cret")])

    async def body() -> None:
        assert await store.authenticate("alice", "wrong") is None
        assert await store.authenticate("alice", "") is None
        assert await store.authenticate("alice", "s3cret ") is None
        assert await store.authenticate("mallory", "s3cret") is None
        assert await store.authenticate("", "") is None

    asyncio.run(body())


def test_names_are_case_sensitive(make_store: MakeStore) -> None:
    store = make_store([(FULL, "s3cret")])
    assert asyncio.run(store.authenticate("Alice", "s3cret")) is None
    assert asyncio.run(store.authenticate("ALICE", "s3cret")) is None


def test_non_ascii_and_raw_byte_passwords(make_store: MakeStore) -> None:
    raw = "caf\udce9-\u00fc\U0001f600"  # a raw byte (surrogate escape), umlaut, emoji
    store = make_store([(FULL, raw)])
    assert asyncio.run(store.authenticate("alice", raw)) == FULL
    assert asyncio.run(store.authenticate("alice", "caf\u00e9-\u00fc\U0001f600")) is None


def test_disabled_and_expired_accounts_are_returned_for_the_server_to_refuse(
    make_store: MakeStore,
) -> None:
    disabled = Account("dora", "/srv/d", disabled=True)
    expired = Account("eve", "/srv/e", expires=1.0)
    store = make_store([(disabled, "pw"), (expired, "pw")])
    got = asyncio.run(store.authenticate("dora", "pw"))
    assert got == disabled and got.refusal("127.0.0.1", 2.0) == "Account disabled."
    got = asyncio.run(store.authenticate("eve", "pw"))
    assert got == expired and got.refusal("127.0.0.1", 2.0) == "Account expired."


def test_find_returns_the_stored_user_without_verifying(make_store: MakeStore) -> None:
    store = make_store([(FULL, "s3cret")])
    found = asyncio.run(store.find("alice"))
    assert found is not None and found.account == FULL
    assert found.password_hash.startswith("$argon2id$")
    assert "s3cret" not in found.password_hash
    assert asyncio.run(store.find("nobody")) is None


def test_verification_leaves_the_event_loop_free(make_store: MakeStore) -> None:
    store = make_store([(FULL, "s3cret")])

    async def body() -> None:
        # A ticker yields to the loop continuously; if hashes were checked on
        # the loop thread it would only get a turn between logins.
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        results = await asyncio.gather(
            *(store.authenticate("alice", "s3cret" if i % 2 else "bad") for i in range(8))
        )
        stop.set()
        await task
        assert results == [None, FULL] * 4
        assert ticks > 200

    asyncio.run(body())


def test_concurrent_logins_of_many_users(make_store: MakeStore) -> None:
    users = [(Account(f"u{i}", f"/srv/u{i}"), f"pw{i}") for i in range(6)]
    store = make_store(users)

    async def body() -> list[Account | None]:
        return await asyncio.gather(
            *(store.authenticate(a.name, pw) for a, pw in users),
            *(store.authenticate(a.name, pw + "x") for a, pw in users),
        )

    results = asyncio.run(body())
    assert results[:6] == [a for a, _ in users]
    assert results[6:] == [None] * 6


def test_close_is_idempotent(make_store: MakeStore) -> None:
    store = make_store([(PLAIN, "pw")])
    asyncio.run(store.close())
    asyncio.run(store.close())
