"""The account model and the async interfaces every user store implements.

Stores are async and know nothing of FTP or of SQL, so that SQLite,
PostgreSQL or an operator's own directory service can stand behind the same
server. An :class:`Account` is plain data: ``home`` and virtual-folder
sources are strings that the server's storage factory interprets (a host
directory for local disk), and the login rules (disabled, expiry, allowed
networks) are data the server enforces, so every store gets them right.
"""

from __future__ import annotations

import abc
import ipaddress
from dataclasses import dataclass

from fileferry.errors import FileferryError
from fileferry.users import verifycache
from fileferry.users.passwords import hash_off_loop, needs_rehash, verify_off_loop

#: pyftpdlib's permission letters: e=cwd, l=list, r=retrieve, a=append,
#: d=delete, f=rename, m=mkdir, w=store, M=chmod, T=set mtime.
ALL_PERMISSIONS = "elradfmwMT"
READ_ONLY = "elr"
#: Every letter an account may hold: pyftpdlib's plus ``X`` (SITE EXEC).
KNOWN_LETTERS = ALL_PERMISSIONS + "X"


class UserStoreError(FileferryError):
    """A store cannot do what was asked; the message is meant for the operator."""


class UserExists(UserStoreError):
    """``add`` of a name the store already holds."""


class UnknownUser(UserStoreError):
    """A name the store does not hold."""


@dataclass(frozen=True, slots=True)
class FolderRule:
    """Permissions that replace the account's own in ``path`` and below it."""

    #: A normalised virtual directory path (``/`` allowed).
    path: str
    permissions: str


@dataclass(frozen=True, slots=True)
class VirtualFolder:
    """Another directory mounted into the account's tree at ``path``."""

    #: A normalised virtual path other than ``/``.
    path: str
    #: What to mount: a host directory for local storage.
    source: str
    #: Writes, deletes and renames inside it are refused (550).
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class Account:
    """What the server needs to know about a logged-in user.

    Zero means "no limit" for every quota, session and rate field, so an
    account built with only a name and a home behaves as before accounts
    had limits.
    """

    name: str
    #: The user's root: a host directory for local storage.
    home: str
    permissions: str = READ_ONLY
    anonymous: bool = False
    #: Per-folder overrides; the longest matching folder wins.
    folder_permissions: tuple[FolderRule, ...] = ()
    virtual_folders: tuple[VirtualFolder, ...] = ()
    #: Bytes and regular files the user may keep (home plus writable virtual folders).
    quota_bytes: int = 0
    quota_files: int = 0
    #: Concurrent logged-in sessions.
    max_sessions: int = 0
    #: Bytes per second, shared by all of the user's sessions.
    upload_rate: int = 0
    download_rate: int = 0
    #: CIDR networks logins may come from; empty means anywhere.
    allowed_networks: tuple[str, ...] = ()
    #: Unix time after which logins are refused; ``None`` never expires.
    expires: float | None = None
    disabled: bool = False

    def _rule_for(self, path: str) -> FolderRule | None:
        best: FolderRule | None = None
        for rule in self.folder_permissions:
            folder = rule.path
            inside = folder == "/" or path == folder or path.startswith(folder + "/")
            if inside and (best is None or len(folder) > len(best.path)):
                best = rule
        return best

    def permissions_at(self, path: str) -> str:
        """The letters that apply at virtual ``path`` (folder overrides included)."""
        rule = self._rule_for(path)
        return rule.permissions if rule is not None else self.permissions

    def permits(self, letter: str, path: str) -> bool:
        """Whether the account may do ``letter`` at virtual ``path``.

        An override names the folder it applies to; it covers that folder
        itself and everything below it, and a deeper override beats a
        shallower one, as in pyftpdlib's ``override_perm``.
        """
        return letter in self.permissions_at(path)

    @property
    def has_quota(self) -> bool:
        return self.quota_bytes > 0 or self.quota_files > 0

    def refusal(self, peer: str, now: float) -> str | None:
        """Why a login with the right password is refused anyway, or ``None``.

        Checked only after the password verified, so the reason tells nothing
        to someone who does not know it.
        """
        if self.disabled:
            return "Account disabled."
        if self.expires is not None and now >= self.expires:
            return "Account expired."
        if self.allowed_networks and not address_allowed(peer, self.allowed_networks):
            return "Login not allowed from your address."
        return None


def address_allowed(peer: str, networks: tuple[str, ...]) -> bool:
    """Whether ``peer`` (IPv4-mapped IPv6 counts as IPv4) is in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for text in networks:
        try:
            if ip in ipaddress.ip_network(text, strict=False):
                return True
        except ValueError:
            continue
    return False


@dataclass(frozen=True, slots=True)
class StoredUser:
    """An account as a store keeps it: with its password hash and bookkeeping."""

    account: Account
    password_hash: str
    created: float = 0.0
    updated: float = 0.0
    last_login: float | None = None


class UserStore(abc.ABC):
    @abc.abstractmethod
    async def authenticate(self, username: str, password: str) -> Account | None:
        """The account if the credentials are right, else ``None``.

        Implementations must take about the same time for an unknown user as
        for a wrong password, and must not block the event loop. Disabled or
        expired accounts are returned all the same: the server refuses them
        with a message that says why (:meth:`Account.refusal`).
        """

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default store holds none."""


class HashedUserStore(UserStore):
    """A store that can look a user up by name; verification is done here, once.

    Keeping the timing rules in one place means no store can forget them:
    an unknown name verifies a dummy hash of the same cost as a real one.
    """

    @abc.abstractmethod
    async def find(self, username: str) -> StoredUser | None:
        """The stored user, or ``None``; never verifies anything."""

    async def authenticate(self, username: str, password: str) -> Account | None:
        user = await self.find(username)
        if user is None:
            ok = await verify_off_loop(password, None)
        else:
            # Repeated logins hit a short-lived cache of successes (never plaintext);
            # a wrong password always pays the full hash. See users/verifycache.py.
            ok = await verifycache.shared.verify(
                username, user.password_hash, password, verify_off_loop
            )
        if not ok or user is None:
            return None
        await self.logged_in(user, password)
        return user.account

    async def logged_in(self, user: StoredUser, password: str) -> None:
        """After a successful verification: bookkeeping, hash upgrades."""


class UserAdmin(abc.ABC):
    """What ``fileferry user`` needs from a store that can be changed.

    Each method is one transaction. Names are case-sensitive, as FTP's are.
    """

    @abc.abstractmethod
    async def add(self, user: StoredUser) -> None:
        """Store a new user; :class:`UserExists` if the name is taken."""

    @abc.abstractmethod
    async def get(self, name: str) -> StoredUser:
        """One user; :class:`UnknownUser` if there is none."""

    @abc.abstractmethod
    async def list(self) -> list[StoredUser]:
        """Every user, sorted by name."""

    @abc.abstractmethod
    async def update(self, account: Account) -> None:
        """Replace every account field of ``account.name``; :class:`UnknownUser`."""

    @abc.abstractmethod
    async def set_password(self, name: str, password_hash: str) -> None:
        """Replace a user's password hash; :class:`UnknownUser`."""

    @abc.abstractmethod
    async def delete(self, name: str) -> None:
        """Remove a user; :class:`UnknownUser`."""


async def upgrade_hash(user: StoredUser, password: str) -> str | None:
    """A current hash of ``password`` if ``user``'s hash is outdated, else ``None``."""
    if not needs_rehash(user.password_hash):
        return None
    return await hash_off_loop(password)
