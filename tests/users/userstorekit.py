"""Types shared by the UserStore contract tests (kept out of conftest for unique imports)."""

from __future__ import annotations

from collections.abc import Callable

from fileferry.users.base import Account, HashedUserStore

#: ``make(users: [(Account, password)]) -> store``; the store is closed at teardown.
MakeStore = Callable[[list[tuple[Account, str]]], HashedUserStore]
