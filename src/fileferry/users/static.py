"""Users given on the command line or in the config file, plus anonymous."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from fileferry.users.base import Account, UserStore
from fileferry.users.passwords import DUMMY_HASH, verify_password

ANONYMOUS_NAMES = frozenset({"anonymous", "ftp"})


@dataclass(frozen=True, slots=True)
class StaticUser:
    account: Account
    password_hash: str


class StaticUserStore(UserStore):
    """An in-memory store; passwords are only ever held as salted hashes."""

    def __init__(self, users: Iterable[StaticUser], anonymous: Account | None = None) -> None:
        self._users = {u.account.name: u for u in users}
        self._anonymous = anonymous

    async def authenticate(self, username: str, password: str) -> Account | None:
        if username.lower() in ANONYMOUS_NAMES and username not in self._users:
            if self._anonymous is not None:
                return self._anonymous
            await asyncio.to_thread(verify_password, password, DUMMY_HASH)
            return None
        user = self._users.get(username)
        encoded = user.password_hash if user else DUMMY_HASH
        ok = await asyncio.to_thread(verify_password, password, encoded)
        return user.account if ok and user else None
