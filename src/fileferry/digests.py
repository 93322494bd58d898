"""The digests HASH and the X* commands speak, behind one hashlib-like interface.

Shared by the server (answering HASH) and the client (checking the answer),
so both sides compute exactly the same thing for each algorithm name.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Protocol


class Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


class _Crc32:
    """zlib's CRC-32 behind the hashlib interface (zlib releases the GIL on big buffers)."""

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes, /) -> None:
        self._value = zlib.crc32(data, self._value)

    def hexdigest(self) -> str:
        return f"{self._value:08x}"


def new_digest(algorithm: str) -> Digest:
    """A fresh digest for an algorithm name as FTP spells it (``SHA-256``, ``CRC32``...)."""
    if algorithm == "CRC32":
        return _Crc32()
    return hashlib.new(algorithm.replace("-", "").lower())
