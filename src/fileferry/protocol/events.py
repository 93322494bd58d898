"""Events: what the protocol core asks the server to do.

Each is a frozen dataclass carrying already-validated arguments: paths are
absolute, normalised virtual paths (see :mod:`fileferry.paths`), numbers are
numbers. The server answers every event except :class:`Answer` with exactly
one final reply through ``Session.send`` (a transfer first sends a 150).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fileferry.protocol.replies import Reply


class Event:
    """Base class of everything ``Session.next_event`` returns."""

    __slots__ = ()


class _NeedData(Event):
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by ``next_event`` when no complete command line is buffered.
NEED_DATA = _NeedData()


@dataclass(frozen=True, slots=True)
class Answer(Event):
    """The core answered by itself; the server only sends ``session.send(reply)``."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class Authenticate(Event):
    username: str
    password: str

    def __repr__(self) -> str:  # never let the password reach a log line
        return f"Authenticate(username={self.username!r}, password=<hidden>)"


@dataclass(frozen=True, slots=True)
class ChangeDirectory(Event):
    path: str


@dataclass(frozen=True, slots=True)
class MakeDirectory(Event):
    path: str


@dataclass(frozen=True, slots=True)
class RemoveDirectory(Event):
    path: str


@dataclass(frozen=True, slots=True)
class DeleteFile(Event):
    path: str


@dataclass(frozen=True, slots=True)
class RenameFrom(Event):
    """RNFR: answer 350 if ``path`` exists; the core then remembers it for RNTO."""

    path: str


@dataclass(frozen=True, slots=True)
class RenameTo(Event):
    src: str
    dst: str


@dataclass(frozen=True, slots=True)
class FileSize(Event):
    path: str


@dataclass(frozen=True, slots=True)
class ModificationTime(Event):
    path: str


@dataclass(frozen=True, slots=True)
class SetModificationTime(Event):
    path: str
    mtime: float


@dataclass(frozen=True, slots=True)
class Status(Event):
    """STAT: server status when ``path`` is None, else a listing over control.

    During a transfer it asks for the transfer's progress.
    """

    path: str | None


@dataclass(frozen=True, slots=True)
class MachineListFile(Event):
    """MLST: facts of one path, on the control connection (250)."""

    path: str
    facts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EnterPassive(Event):
    """PASV (227) or EPSV (229): open a listener for the next transfer."""

    extended: bool
    #: EPSV's network protocol (1 = IPv4, 2 = IPv6) if the client named one.
    protocol: int | None = None


@dataclass(frozen=True, slots=True)
class EnterActive(Event):
    """PORT or EPRT: the server checks the address against the control peer."""

    host: str
    port: int
    extended: bool


@dataclass(frozen=True, slots=True)
class Abort(Event):
    """ABOR: abort a running transfer (426 then 226) or answer 225/226 if idle."""


@dataclass(frozen=True, slots=True)
class Quit(Event):
    pass


@dataclass(frozen=True, slots=True)
class Reinitialize(Event):
    """REIN: drop the login and data channel; the session starts over (220)."""


@dataclass(frozen=True, slots=True)
class StartTLS(Event):
    """AUTH TLS: answer 234, then run the TLS handshake on the control connection.

    When the 234 is sent, the core discards every byte it buffered after the
    AUTH line: those came in clear text and must not pass as protected.
    """

    mechanism: str


@dataclass(frozen=True, slots=True)
class SiteCommand(Event):
    """A SITE subcommand the server registered (``CoreConfig.site_commands``)."""

    command: str
    arg: str
    cwd: str


@dataclass(frozen=True, slots=True)
class AvailableSpace(Event):
    """AVBL: bytes the user may still store in directory ``path`` (213), or 550."""

    path: str


@dataclass(frozen=True, slots=True)
class FileHash(Event):
    """HASH or an X* command: digest bytes ``[start, end)`` of a file (``end`` None: to EOF).

    ``algorithm`` is a name from ``hashcommands.ALGORITHMS``; ``command`` is the
    verb, which decides the reply's shape (213 with range for HASH, 250 for X*).
    """

    path: str
    algorithm: str
    command: str
    start: int = 0
    end: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The client closed the control connection."""


class ListFormat(enum.Enum):
    LIST = "LIST"
    NLST = "NLST"
    MLSD = "MLSD"


class StoreMode(enum.Enum):
    REPLACE = "STOR"
    APPEND = "APPE"
    UNIQUE = "STOU"


class Transfer(Event):
    """Base of the events that use the data channel: 150, data, then a final reply."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ListDirectory(Transfer):
    path: str
    format: ListFormat
    facts: tuple[str, ...] = ()
    #: The path named a file, not necessarily a directory (``LIST file``).
    arg_given: bool = False


@dataclass(frozen=True, slots=True)
class RetrieveFile(Transfer):
    path: str
    offset: int
    ascii: bool


@dataclass(frozen=True, slots=True)
class StoreFile(Transfer):
    """STOR/APPE/STOU; for STOU ``path`` is the directory to create a name in."""

    path: str
    offset: int
    mode: StoreMode
    ascii: bool
