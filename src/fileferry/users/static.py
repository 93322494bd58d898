"""Users given on the command line or in the config file, plus anonymous.

A ``fallback`` store (the SQLite database) is asked for names this one does
not hold, so command-line users, database users and anonymous can be served
together while every login still verifies exactly one hash.
"""

from __future__ import annotations

from collections.abc import Iterable

from fileferry.users.base import Account, HashedUserStore, StoredUser
from fileferry.users.passwords import verify_off_loop

ANONYMOUS_NAMES = frozenset({"anonymous", "ftp"})

#: Kept under this name for code written against fileferry 0.1.
StaticUser = StoredUser


class StaticUserStore(HashedUserStore):
    """An in-memory store; passwords are only ever held as salted hashes."""

    def __init__(
        self,
        users: Iterable[StoredUser],
        anonymous: Account | None = None,
        *,
        fallback: HashedUserStore | None = None,
    ) -> None:
        self._users = {u.account.name: u for u in users}
        self._anonymous = anonymous
        self._fallback = fallback

    async def find(self, username: str) -> StoredUser | None:
        user = self._users.get(username)
        if user is None and self._fallback is not None:
            user = await self._fallback.find(username)
        return user

    async def authenticate(self, username: str, password: str) -> Account | None:
        if username.lower() in ANONYMOUS_NAMES and username not in self._users:
            if self._anonymous is not None:
                return self._anonymous
            await verify_off_loop(password, None)
            return None
        user = self._users.get(username)
        if user is None and self._fallback is not None:
            return await self._fallback.authenticate(username, password)
        return await super().authenticate(username, password)

    async def close(self) -> None:
        if self._fallback is not None:
            await self._fallback.close()
