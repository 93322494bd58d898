"""Remote directory entries, from MLSD facts or, on servers without them, ``ls -l`` text.

MLSD (RFC 3659) is the only listing a program can trust: exact sizes, UTC
modification times to the second, and an explicit type. Servers that lack
it (vsftpd, some embedded ones) still send the Unix ``ls -l`` shape to LIST,
which is parsed as well as that format allows: times may lack a year or
seconds, and are then read as the most recent matching date in the past;
each entry says how coarse its time is, so that comparisons allow for it.

The text itself is read by :mod:`fileferry.protocol.listparse`; this module
turns it into the client's :class:`RemoteEntry`.
"""

from __future__ import annotations

import datetime as dt
import enum
import posixpath
from dataclasses import dataclass

from fileferry.protocol.listing import parse_mdtm
from fileferry.protocol.listparse import parse_ls, parse_size, split_mlsx


class Kind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    LINK = "link"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    """One name on the server.

    ``path`` is how to name it to the server (joined onto the listed
    directory); ``size`` and ``mtime`` are ``None`` when the server did not say.
    """

    name: str
    path: str
    kind: Kind
    size: int | None = None
    #: Seconds since the epoch (UTC), as precise as the server reported.
    mtime: float | None = None
    #: How far ``mtime`` may lie below the true time, in seconds: 1 for MLSD
    #: and MDTM, a minute or a whole day for ``ls -l`` text.
    precision: float = 1.0

    @property
    def is_dir(self) -> bool:
        return self.kind is Kind.DIR

    @property
    def is_file(self) -> bool:
        return self.kind is Kind.FILE


def join(directory: str, name: str) -> str:
    """A remote path: ``""`` is the login directory, so no leading slash appears from it."""
    if not directory:
        return name
    return posixpath.join(directory, name)


def basename(path: str) -> str:
    return posixpath.basename(path.rstrip("/")) if path not in ("", "/") else ""


def parse_mlsx(line: str, directory: str) -> RemoteEntry | None:
    """One MLSD line (``facts; name``); ``None`` for ``.``/``..`` and lines without facts."""
    split = split_mlsx(line)
    if split is None:
        return None
    facts, name = split
    kind_text = facts.get("type", "").lower()
    if kind_text in ("cdir", "pdir") or name in (".", ".."):
        return None
    if kind_text == "dir":
        kind = Kind.DIR
    elif kind_text == "file":
        kind = Kind.FILE
    elif "symlink" in kind_text or kind_text.startswith("os.unix=slink"):
        kind = Kind.LINK
    else:
        kind = Kind.OTHER
    size = parse_size(facts.get("size", ""))
    mtime = None
    if "modify" in facts:
        try:
            mtime = parse_mdtm(facts["modify"])
        except ValueError:
            mtime = None
    name = posixpath.basename(name) if "/" in name else name
    return RemoteEntry(name, join(directory, name), kind, size, mtime)


_LS_KINDS = {"d": Kind.DIR, "-": Kind.FILE, "l": Kind.LINK}
_DAY = 86400


def parse_list(line: str, directory: str, now: dt.datetime | None = None) -> RemoteEntry | None:
    """One ``ls -l`` line; ``None`` for ``total N``, ``.``/``..`` and anything unparseable."""
    parsed = parse_ls(line, now or dt.datetime.now(dt.UTC))
    if parsed is None or parsed.name in (".", ".."):
        return None
    kind = _LS_KINDS.get(parsed.type, Kind.OTHER)
    path = join(directory, parsed.name)
    return RemoteEntry(
        parsed.name, path, kind, parsed.size, parsed.mtime, _ls_precision(parsed.mtime)
    )


def _ls_precision(mtime: float | None) -> float:
    """An ``ls -l`` time has minutes (``Mar 4 13:14``) or, for entries older than
    six months, only the day (``Mar 4 2020``), which reads as midnight. A time at
    midnight is taken as a day's precision either way: erring coarse costs at
    most a change missed within that day for files whose size stayed the same."""
    if mtime is not None and mtime % _DAY == 0:
        return float(_DAY)
    return 60.0
