"""Password hashes: Argon2id for new ones, scrypt ones still verify, the dummy costs the same."""

from __future__ import annotations

import asyncio

from fileferry.users.passwords import (
    dummy_hash,
    hash_password,
    hash_scrypt,
    is_valid_hash,
    needs_rehash,
    verify_off_loop,
    verify_password,
)


def _params(encoded: str) -> str:
    # $argon2id$v=19$m=...,t=...,p=...$salt$hash -> the cost part
    return encoded.split("$")[3]


def test_new_hashes_are_salted_argon2id() -> None:
    a, b = hash_password("pw"), hash_password("pw")
    assert a.startswith("$argon2id$v=19$") and b.startswith("$argon2id$")
    assert a != b
    assert verify_password("pw", a) and verify_password("pw", b)
    assert not verify_password("pW", a)
    assert not needs_rehash(a)


def test_legacy_scrypt_hashes_verify_and_want_an_upgrade() -> None:
    old = hash_scrypt("pw")
    assert old.startswith("scrypt$")
    assert verify_password("pw", old)
    assert not verify_password("px", old)
    assert needs_rehash(old)


def test_malformed_hashes_never_match() -> None:
    for bad in ("", "plain", "$argon2id$garbage", "scrypt$1$2", "$2b$12$abcdefghijk"):
        assert not verify_password("", bad)
        assert not verify_password("pw", bad)
        assert not is_valid_hash(bad)
    assert is_valid_hash(hash_password("x")) and is_valid_hash(hash_scrypt("x"))


def test_the_dummy_hash_costs_what_a_real_one_does() -> None:
    assert dummy_hash() == dummy_hash()
    assert _params(dummy_hash()) == _params(hash_password("anything"))


def test_unknown_user_verification_is_never_true() -> None:
    assert asyncio.run(verify_off_loop("", None)) is False
    assert asyncio.run(verify_off_loop("pw", hash_password("pw"))) is True
