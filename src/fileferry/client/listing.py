"""Remote directory entries, from MLSD facts or, on servers without them, ``ls -l`` text.

MLSD (RFC 3659) is the only listing a program can trust: exact sizes, UTC
modification times to the second, and an explicit type. Servers that lack
it (vsftpd, some embedded ones) still send the Unix ``ls -l`` shape to LIST,
which is parsed as well as that format allows: times may lack a year or
seconds, and are then read as the most recent matching date in the past.
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
import posixpath
import re
from dataclasses import dataclass

from fileferry.protocol.listing import parse_mdtm


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


def parse_facts(facts: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for fact in facts.split(";"):
        key, sep, value = fact.partition("=")
        if sep:
            out[key.strip().lower()] = value
    return out


def parse_mlsx(line: str, directory: str) -> RemoteEntry | None:
    """One MLSD line (``facts; name``); ``None`` for ``.``/``..`` and lines without facts."""
    facts_text, sep, name = line.partition(" ")
    if not sep or not name:
        return None
    facts = parse_facts(facts_text)
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
    size_text = facts.get("size")
    size = int(size_text) if size_text and size_text.isdigit() else None
    mtime = None
    if "modify" in facts:
        try:
            mtime = parse_mdtm(facts["modify"])
        except ValueError:
            mtime = None
    name = posixpath.basename(name) if "/" in name else name
    return RemoteEntry(name, join(directory, name), kind, size, mtime)


_LS = re.compile(
    r"^(?P<mode>[bcdlps-][rwxsStTl-]{9}[+.@]?)\s+\d+\s+\S+\s+\S+\s+(?P<size>\d+)\s+"
    r"(?P<month>[A-Za-z]{3})\s+(?P<day>\d{1,2})\s+(?P<when>\d{1,2}:\d{2}|\d{4})\s(?P<name>.+)$"
)
_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}


def _ls_time(month: str, day: str, when: str, now: dt.datetime) -> float | None:
    number = _MONTHS.get(month.capitalize())
    if number is None:
        return None
    try:
        if ":" in when:
            hour, minute = (int(x) for x in when.split(":"))
            stamp = dt.datetime(now.year, number, int(day), hour, minute, tzinfo=dt.UTC)
            if stamp > now + dt.timedelta(days=1):
                stamp = stamp.replace(year=now.year - 1)
        else:
            stamp = dt.datetime(int(when), number, int(day), tzinfo=dt.UTC)
    except ValueError:
        return None
    return stamp.timestamp()


def parse_list(line: str, directory: str, now: dt.datetime | None = None) -> RemoteEntry | None:
    """One ``ls -l`` line; ``None`` for ``total N``, ``.``/``..`` and anything unparseable."""
    match = _LS.match(line)
    if not match:
        return None
    name = match["name"]
    mode = match["mode"][0]
    if mode == "l":
        name = name.split(" -> ", 1)[0]
    if name in (".", ".."):
        return None
    kind = {"d": Kind.DIR, "-": Kind.FILE, "l": Kind.LINK}.get(mode, Kind.OTHER)
    mtime = _ls_time(match["month"], match["day"], match["when"], now or dt.datetime.now(dt.UTC))
    return RemoteEntry(name, join(directory, name), kind, int(match["size"]), mtime)
