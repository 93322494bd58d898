"""The account model and the async :class:`UserStore` interface.

Stores are async and know nothing of FTP so that SQLite, PostgreSQL or an
operator's own directory service can stand behind the same server.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

#: pyftpdlib's permission letters: e=cwd, l=list, r=retrieve, a=append,
#: d=delete, f=rename, m=mkdir, w=store, M=chmod, T=set mtime.
ALL_PERMISSIONS = "elradfmwMT"
READ_ONLY = "elr"


@dataclass(frozen=True, slots=True)
class Account:
    """What the server needs to know about a logged-in user."""

    name: str
    #: The user's root: a host directory for local storage.
    home: str
    permissions: str = READ_ONLY
    anonymous: bool = False

    def permits(self, letter: str, path: str) -> bool:
        """Whether the account may do ``letter`` at virtual ``path``.

        ``path`` is unused until per-folder overrides arrive; taking it now
        keeps every call site right when they do.
        """
        return letter in self.permissions


class UserStore(abc.ABC):
    @abc.abstractmethod
    async def authenticate(self, username: str, password: str) -> Account | None:
        """The account if the credentials are right, else ``None``.

        Implementations must take about the same time for an unknown user as
        for a wrong password, and must not block the event loop.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default store holds none."""
