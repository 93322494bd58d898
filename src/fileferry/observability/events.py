"""The outcomes a session reports: one frozen dataclass per kind.

Why types and not log strings: a metrics exporter counting failed logins, an
xferlog writer or a web page listing live transfers each need the same facts
with their types (bytes as an int, the reply code, the direction), and none
of them should have to parse a log line or edit a handler to get them.

Every event carries its :class:`Origin` (which session, from where, as whom)
and the wall-clock time it happened (``at``), taken when it was made, so an
observer that runs later still reports when it really happened. ``name`` is
the stable short name the session log has always printed; :meth:`log_fields`
gives the ``key=value`` pairs of that line, in their historical order.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import ClassVar

_NOT_LOGGED = frozenset({"origin", "at"})
#: The logged field names of each event type, found once (``fields()`` is slow).
_LOGGED: dict[type, tuple[str, ...]] = {}


@dataclass(frozen=True, slots=True)
class Origin:
    """Who an event is about; one per session and login, shared by its events."""

    session: int
    peer: str
    #: The logged-in account's name, or ``None`` before login.
    user: str | None = None


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """Base of every event an observer receives."""

    name: ClassVar[str] = "event"
    #: A *detail* event is built only when an observer asks for details
    #: (``wants_detail``, e.g. metrics) and goes only to such observers: the
    #: per-command ones would cost every command, and the session log has
    #: never had these lines.
    detail: ClassVar[bool] = False
    #: Whether the session log writes a line for it (not for a fact another line already says).
    logged: ClassVar[bool] = True

    origin: Origin
    at: float = field(default_factory=time.time, kw_only=True)

    def log_fields(self) -> tuple[tuple[str, object], ...]:
        """``(key, value)`` pairs for the session log: own fields, ``None`` left out."""
        kind = type(self)
        names = _LOGGED.get(kind)
        if names is None:
            fields = dataclasses.fields(self)
            names = _LOGGED[kind] = tuple(f.name for f in fields if f.name not in _NOT_LOGGED)
        return tuple((name, value) for name in names if (value := getattr(self, name)) is not None)


# --- the session itself ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionOpened(SessionEvent):
    name: ClassVar[str] = "connect"


@dataclass(frozen=True, slots=True)
class SessionClosed(SessionEvent):
    name: ClassVar[str] = "disconnect"


@dataclass(frozen=True, slots=True)
class IdleTimeout(SessionEvent):
    """A logged-in client said nothing for ``idle_timeout``; the server closed."""

    name: ClassVar[str] = "idle-timeout"


@dataclass(frozen=True, slots=True)
class LoginTimeout(SessionEvent):
    """A client did not log in within ``login_timeout``; the server closed."""

    name: ClassVar[str] = "login-timeout"


# --- login -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginFailed(SessionEvent):
    """Unknown user or wrong password (deliberately not told apart)."""

    name: ClassVar[str] = "login-failed"
    username: str


@dataclass(frozen=True, slots=True)
class Banned(SessionEvent):
    """Too many failed logins: ``client`` (an address or network key) is banned."""

    name: ClassVar[str] = "banned"
    client: str


@dataclass(frozen=True, slots=True)
class LoginRefused(SessionEvent):
    """The password was right but the login policy said no (``reason``: the 530 text)."""

    name: ClassVar[str] = "login-refused"
    username: str
    reason: str


@dataclass(frozen=True, slots=True)
class LoginSucceeded(SessionEvent):
    """``origin.user`` is the account now logged in."""

    name: ClassVar[str] = "login"
    anonymous: bool


# --- TLS on the control connection ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class TLSRefused(SessionEvent):
    name: ClassVar[str] = "tls-refused"
    reason: str


@dataclass(frozen=True, slots=True)
class TLSFailed(SessionEvent):
    name: ClassVar[str] = "tls-failed"
    reason: str


@dataclass(frozen=True, slots=True)
class TLSEstablished(SessionEvent):
    name: ClassVar[str] = "tls"
    version: str | None


# --- the data channel ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PassivePortsExhausted(SessionEvent):
    name: ClassVar[str] = "passive-ports-exhausted"


@dataclass(frozen=True, slots=True)
class PassiveShareReached(SessionEvent):
    """PASV refused: the client's address already holds its share of the range."""

    name: ClassVar[str] = "passive-share-reached"
    held: int


@dataclass(frozen=True, slots=True)
class PassiveListenerExpired(SessionEvent):
    """A passive listener no transfer took within the accept timeout was closed."""

    name: ClassVar[str] = "passive-expired"
    port: int


@dataclass(frozen=True, slots=True)
class PortRefused(SessionEvent):
    """PORT/EPRT refused (a bounce attempt or a privileged port); ``port`` if that was why."""

    name: ClassVar[str] = "port-refused"
    host: str
    port: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class DataConnectionFailed(SessionEvent):
    name: ClassVar[str] = "data-connection-failed"
    reason: str


@dataclass(frozen=True, slots=True)
class TransferFinished(SessionEvent):
    """One RETR/STOR/APPE/STOU/LIST/NLST/MLSD ended, well or not (``reply_code``)."""

    name: ClassVar[str] = "transfer"
    #: The verb: ``RETR``, ``STOR``, ``APPE``, ``STOU``, ``LIST``, ``NLST`` or ``MLSD``.
    command: str
    path: str
    #: ``"download"`` (to the client: RETR and listings) or ``"upload"``.
    direction: str
    bytes: int
    seconds: float
    reply_code: int
    #: How the bytes moved (``"sendfile"``, ``"tls-pump"``...), when the data path says.
    data_path: str = ""
    #: TYPE A (line endings converted) rather than binary.
    ascii: bool = False

    def log_fields(self) -> tuple[tuple[str, object], ...]:
        return (
            ("cmd", self.command),
            ("path", self.path),
            ("bytes", self.bytes),
            ("secs", round(self.seconds, 3)),
            ("result", self.reply_code),
        )


# --- details: only for observers that ask for them (``wants_detail``) ---------------


@dataclass(frozen=True, slots=True)
class CommandCompleted(SessionEvent):
    """A command got its final reply (transfers report ``TransferFinished`` instead).

    ``command`` is the verb as the command table knows it, or ``""`` for a
    line the core could not take as a command (unknown verb, too long).
    """

    name: ClassVar[str] = "command"
    detail: ClassVar[bool] = True
    command: str
    reply_code: int


@dataclass(frozen=True, slots=True)
class StorageFailed(SessionEvent):
    """A storage operation failed with an error that became the reply.

    ``error`` is the error's class name (``NotFound``, ``QuotaExceeded``,
    ``StorageUnavailable``...): a small fixed set, fit for a metric label.
    """

    name: ClassVar[str] = "storage-error"
    detail: ClassVar[bool] = True
    command: str
    error: str
    reply_code: int


@dataclass(frozen=True, slots=True)
class FileUploaded(SessionEvent):
    """An upload was committed and answered 226: ``path`` now holds ``size`` bytes.

    Separate from :class:`TransferFinished`, which also reports failures and
    counts the bytes moved (an APPE moves less than the file holds): hooks
    that act on a finished file want exactly this. ``local_path`` is where
    the file lies on the server's disk, when the storage can say (local
    disk); ``None`` for other backends.
    """

    name: ClassVar[str] = "upload"
    #: The ``transfer`` line already says it.
    logged: ClassVar[bool] = False
    #: ``STOR``, ``APPE`` or ``STOU``.
    command: str
    path: str
    size: int
    local_path: str | None = None


# --- changes to the tree ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DirectoryMade(SessionEvent):
    name: ClassVar[str] = "mkdir"
    path: str


@dataclass(frozen=True, slots=True)
class DirectoryRemoved(SessionEvent):
    name: ClassVar[str] = "rmdir"
    path: str


@dataclass(frozen=True, slots=True)
class FileDeleted(SessionEvent):
    name: ClassVar[str] = "delete"
    path: str


@dataclass(frozen=True, slots=True)
class Renamed(SessionEvent):
    name: ClassVar[str] = "rename"
    src: str
    dst: str


@dataclass(frozen=True, slots=True)
class ModeChanged(SessionEvent):
    """SITE CHMOD; ``mode`` holds only the nine ``rwx`` bits."""

    name: ClassVar[str] = "chmod"
    path: str
    mode: int

    def log_fields(self) -> tuple[tuple[str, object], ...]:
        return (("path", self.path), ("mode", f"{self.mode:o}"))


@dataclass(frozen=True, slots=True)
class FileHashed(SessionEvent):
    name: ClassVar[str] = "hash"
    path: str
    algorithm: str
    bytes: int


# --- SITE EXEC ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteExecRefused(SessionEvent):
    name: ClassVar[str] = "site-exec-refused"
    command: str
    reason: str

    def log_fields(self) -> tuple[tuple[str, object], ...]:
        return (("name", self.command), ("reason", self.reason))


@dataclass(frozen=True, slots=True)
class SiteExecStarted(SessionEvent):
    name: ClassVar[str] = "site-exec"
    command: str
    args: tuple[str, ...]

    def log_fields(self) -> tuple[tuple[str, object], ...]:
        return (("name", self.command), ("args", list(self.args)))
