"""Slow, salted password hashes, compared in constant time, verified off the loop.

New hashes are Argon2id (argon2-cffi) with OWASP's recommended cost
(19 MiB, two passes, one lane): memory-hard, so a stolen user database is
expensive to attack with GPUs, yet cheap enough that a login storm does not
exhaust the server. The encoded form names its algorithm and parameters, so
older ``scrypt$`` hashes (fileferry 0.1) keep verifying, and a store can
upgrade them on the next successful login (:func:`needs_rehash`).

Verification costs tens of milliseconds of CPU and memory, so servers call
:func:`verify_off_loop`: it runs on a small dedicated pool, which both keeps
the event loop free and caps the memory a flood of logins can take.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher

_N, _R, _P = 2**14, 8, 1
_KEY_BYTES = 32

#: Verifications at once; each holds ``memory_cost`` KiB while it runs.
VERIFY_WORKERS = 4


@functools.cache
def _hasher() -> PasswordHasher:
    """The Argon2id hasher, made (and argon2-cffi imported) on first use: a server
    whose accounts need no hash (anonymous only) never loads the library."""
    from argon2 import PasswordHasher, Type

    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)


@functools.cache
def _argon2_errors() -> tuple[type[Exception], ...]:
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    return (VerifyMismatchError, VerificationError, InvalidHashError)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _encode(password: str) -> bytes:
    # Surrogate escapes carry a client's raw non-UTF-8 bytes through unchanged.
    return password.encode("utf-8", "surrogateescape")


def hash_password(password: str) -> str:
    """Encode ``password`` as an Argon2id PHC string (``$argon2id$v=19$...``)."""
    return _hasher().hash(_encode(password))


def hash_scrypt(password: str) -> str:
    """The legacy ``scrypt$N$r$p$salt$key`` form, kept for tests of old databases."""
    salt = os.urandom(16)
    key = hashlib.scrypt(_encode(password), salt=salt, n=_N, r=_R, p=_P, dklen=_KEY_BYTES)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(key)}"


def _verify_scrypt(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(key)
        actual = hashlib.scrypt(
            _encode(password),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def verify_password(password: str, encoded: str) -> bool:
    """Check ``password`` against an encoded hash; malformed hashes never match.

    Both schemes compare in constant time (libargon2 and ``hmac.compare_digest``).
    """
    if encoded.startswith("scrypt$"):
        return _verify_scrypt(password, encoded)
    hasher = _hasher()
    try:
        return hasher.verify(encoded, _encode(password))
    except (*_argon2_errors(), ValueError, TypeError):
        return False


def needs_rehash(encoded: str) -> bool:
    """Whether a hash that just verified should be replaced by a current one."""
    if not encoded.startswith("$argon2id$"):
        return True
    hasher = _hasher()
    try:
        return hasher.check_needs_rehash(encoded)
    except (*_argon2_errors(), ValueError):
        return True


def is_valid_hash(encoded: str) -> bool:
    """Whether ``encoded`` looks like a hash this module can verify (for config checks)."""
    if encoded.startswith("scrypt$"):
        return len(encoded.split("$")) == 6
    hasher = _hasher()
    try:
        hasher.check_needs_rehash(encoded)
    except (*_argon2_errors(), ValueError):
        return False
    return encoded.startswith("$argon2")


@functools.cache
def dummy_hash() -> str:
    """A hash of a random password, verified when the user is unknown.

    Made with the same parameters as real hashes, so an unknown name costs
    the same time as a wrong password and names cannot be enumerated.
    Computed once, on first use, so that starting the CLI stays fast.
    """
    return hash_password(os.urandom(16).hex())


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=VERIFY_WORKERS, thread_name_prefix="fileferry-hash")


async def verify_off_loop(password: str, encoded: str | None) -> bool:
    """:func:`verify_password` on the hashing pool; ``None`` verifies the dummy hash."""
    loop = asyncio.get_running_loop()
    ok = await loop.run_in_executor(_pool(), _verify_or_dummy, password, encoded)
    return ok and encoded is not None


async def hash_off_loop(password: str) -> str:
    """:func:`hash_password` on the hashing pool."""
    return await asyncio.get_running_loop().run_in_executor(_pool(), hash_password, password)


def _verify_or_dummy(password: str, encoded: str | None) -> bool:
    # The dummy is made here, on the pool, so its one-time cost never lands on the loop.
    return verify_password(password, encoded if encoded is not None else dummy_hash())
