"""A storage backend module registered by a test, as S3 will be: ``memory://NAME``.

It is what a new backend has to provide (``check`` and ``provider``), over
the in-memory storage, so the test can see the files land outside the disk.
"""

from __future__ import annotations

from fileferry.config import ServerConfig
from fileferry.errors import ConfigError
from fileferry.storage.base import Storage
from fileferry.storage.memory import MemoryStorage
from fileferry.users.base import Account

#: Every tree made, by location, for the test to look into.
TREES: dict[str, MemoryStorage] = {}


def check(location: str) -> str:
    if not location.removeprefix("memory://"):
        raise ConfigError(f"root: {location!r} names no tree")
    return location


class _Provider:
    def __call__(self, account: Account) -> Storage:
        return TREES.setdefault(account.home, MemoryStorage())

    async def close(self) -> None:
        pass


def provider(config: ServerConfig) -> _Provider:
    return _Provider()
