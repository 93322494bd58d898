"""Slow, salted password hashes, compared in constant time.

The stdlib's scrypt is used so that ``fileferry serve`` needs no extra
package; the encoded form names its algorithm and parameters, so stronger
schemes (Argon2id for the SQLite store) can live beside it and old hashes
keep verifying.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_KEY_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """Encode ``password`` as ``scrypt$N$r$p$salt$key``."""
    salt = secrets.token_bytes(_SALT_BYTES)
    key = hashlib.scrypt(
        password.encode("utf-8", "surrogateescape"), salt=salt, n=_N, r=_R, p=_P, dklen=_KEY_BYTES
    )
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    """Check ``password`` against an encoded hash; malformed hashes never match."""
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(key)
        actual = hashlib.scrypt(
            password.encode("utf-8", "surrogateescape"),
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


#: Verified against when the user is unknown, so that an unknown name costs
#: the same time as a wrong password and names cannot be enumerated.
DUMMY_HASH = hash_password(secrets.token_hex(16))
