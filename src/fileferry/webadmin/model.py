"""What the web admin sees of a running server, and what it may ask of it.

Plain data and protocols, importing no web library: the server builds a
:class:`Host` (``server/adminhost.py``) and the admin app only ever talks to
it, so the admin never reaches into the server's modules (the import rules
forbid it) and tests can read the same views the pages show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fileferry.config import ServerConfig
    from fileferry.limits.interfaces import BanList, LoginChecks
    from fileferry.users.admins import AdminDirectory
    from fileferry.users.base import Account, StoredUser


@dataclass(frozen=True, slots=True)
class SessionView:
    """One control connection, as of the moment it was read."""

    id: int
    address: str
    user: str | None
    #: "none", "control" (AUTH TLS / implicit), or "control+data" (PROT P too).
    tls: str
    #: Seconds since the last command (or since it connected).
    idle: float
    #: Seconds since it connected.
    connected: float
    #: The last command's verb (the transfer's while one runs).
    command: str


@dataclass(frozen=True, slots=True)
class TransferView:
    """A transfer in progress: bytes so far from the data connection's own counter."""

    session: int
    user: str | None
    address: str
    command: str
    path: str
    #: "download" (to the client) or "upload".
    direction: str
    bytes: int
    #: Bytes the transfer will move when known (a download); ``None`` for uploads.
    size: int | None
    #: Bytes per second over the last sample.
    rate: float


@dataclass(frozen=True, slots=True)
class Usage:
    """An account's figures against its quota (``None`` fields: no such quota)."""

    bytes: int
    files: int


@dataclass(frozen=True, slots=True)
class StorageFigure:
    """How full the served root is, as last measured; reading it costs no I/O.

    A disk (``kind`` "disk") has a capacity and is measured when asked (one
    ``statvfs``). A bucket (``kind`` "bucket") has no capacity to speak of,
    so ``total`` is ``None``; its ``used`` bytes and ``objects`` come from a
    listing made in the background (``server/rootusage.py``), at
    ``measured_at``. ``error`` says why the latest attempt failed: with
    figures, they are the last good ones (stale); without, usage is unknown.
    """

    kind: str
    location: str
    used: int | None = None
    total: int | None = None
    objects: int | None = None
    #: Unix time the figure's measurement began (whatever was stored before it is counted).
    measured_at: float | None = None
    #: False: the listing was stopped at its time bound, and the figures are lower bounds.
    complete: bool = True
    error: str | None = None
    #: Seconds between background measurements (``None`` for a disk: measured when asked).
    interval: float | None = None


class Live(Protocol):
    """The live sessions of the server; reads cost a walk over the sessions, nothing more."""

    def sessions(self) -> list[SessionView]: ...

    def transfers(self) -> list[TransferView]: ...

    async def kick(self, session_id: int, farewell: str) -> bool:
        """End session ``session_id`` (421 ``farewell``); False if there is no such session."""
        ...


class UserAdminStore(Protocol):
    """The account half of the user database (``users.base.UserAdmin``)."""

    async def add(self, user: StoredUser) -> None: ...
    async def get(self, name: str) -> StoredUser: ...
    async def list(self) -> list[StoredUser]: ...
    async def update(self, account: Account) -> None: ...
    async def set_password(self, name: str, password_hash: str) -> None: ...
    async def delete(self, name: str) -> None: ...


class Host(Protocol):
    """Everything the admin app uses of the server that runs it."""

    @property
    def config(self) -> ServerConfig: ...

    @property
    def live(self) -> Live: ...

    @property
    def bans(self) -> BanList: ...

    @property
    def login_checks(self) -> LoginChecks: ...

    @property
    def users(self) -> UserAdminStore: ...

    @property
    def admins(self) -> AdminDirectory: ...

    async def usage(self, account: Account) -> Usage | None:
        """What ``account`` uses against its quota (the server's own figure); None: no quota."""
        ...

    def disk(self) -> tuple[int, int] | None:
        """(used, total) bytes of the storage, or None when it cannot tell (a bucket)."""
        ...

    def storage_usage(self) -> StorageFigure:
        """The served root's usage: a disk's now, a bucket's as last counted (no listing here)."""
        ...
