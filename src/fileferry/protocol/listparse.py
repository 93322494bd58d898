"""Reading directory listings: MLSD/MLST facts (RFC 3659) and ``ls -l`` lines.

The client's half of :mod:`fileferry.protocol.listing`, which writes them.
MLSx is exact: ``fact=value;`` pairs (names case-insensitive), a space, and
the name, which may contain anything but a line end. ``ls -l`` is only a
convention, read as far as it goes: sizes are exact, but a time has no
seconds and, within six months, no year, so it is taken as the latest such
moment that is not in the future (one day of slack for clocks and zones).

Sans-I/O like the rest of the core: the caller says what time it is.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

from fileferry.protocol.listing import _MONTHS

#: English month names, whatever the locale: what servers (and listing.py) write.
_MONTH_NUMBERS = {name.upper(): number for number, name in enumerate(_MONTHS, 1)}

_LS = re.compile(
    r"^(?P<mode>[bcdlps-][rwxsStTl-]{9}[+.@]?)\s+[0-9]+\s+\S+\s+\S+\s+(?P<size>[0-9]+)\s+"
    r"(?P<month>[A-Za-z]{3})\s+(?P<day>[0-9]{1,2})\s+(?P<when>[0-9]{1,2}:[0-9]{2}|[0-9]{4})"
    r"\s(?P<name>.+)$",
    re.ASCII,
)


def parse_size(text: str) -> int | None:
    """A ``size`` fact or a SIZE reply (RFC 3659): decimal ASCII digits, else None.

    Not ``str.isdigit`` alone: it admits ``²`` and other scripts' digits,
    on which ``int()`` raises or reads something the server did not mean.
    """
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def parse_facts(facts: str) -> dict[str, str]:
    """``type=file;Size=12;`` → ``{"type": "file", "size": "12"}`` (names lower-cased)."""
    out: dict[str, str] = {}
    for fact in facts.split(";"):
        key, sep, value = fact.partition("=")
        if sep:
            out[key.strip().lower()] = value
    return out


def split_mlsx(line: str) -> tuple[dict[str, str], str] | None:
    """One MLSD line (or MLST entry): its facts and its name; ``None`` if either is missing."""
    facts, sep, name = line.partition(" ")
    if not sep or not name:
        return None
    return parse_facts(facts), name


@dataclass(frozen=True, slots=True)
class LsEntry:
    #: The mode's first letter: ``-`` file, ``d`` directory, ``l`` link, others.
    type: str
    size: int
    #: Seconds since the epoch (UTC), to the minute at best; None if unreadable.
    mtime: float | None
    #: For a link, without its `` -> target``.
    name: str


def _ls_time(month: str, day: str, when: str, now: _dt.datetime) -> float | None:
    number = _MONTH_NUMBERS.get(month.upper())
    if number is None:
        return None
    try:
        if ":" in when:
            hour, minute = (int(x) for x in when.split(":"))
            stamp = _dt.datetime(now.year, number, int(day), hour, minute, tzinfo=_dt.UTC)
            if stamp > now + _dt.timedelta(days=1):
                stamp = stamp.replace(year=now.year - 1)
        else:
            stamp = _dt.datetime(int(when), number, int(day), tzinfo=_dt.UTC)
    except ValueError:
        return None
    return stamp.timestamp()


def parse_ls(line: str, now: _dt.datetime) -> LsEntry | None:
    """One ``ls -l`` line; ``None`` for ``total N`` and anything else unreadable.

    ``now`` must be timezone-aware: it decides the year of recent entries.
    """
    match = _LS.match(line)
    if not match:
        return None
    name, kind = match["name"], match["mode"][0]
    if kind == "l":
        name = name.split(" -> ", 1)[0]
    mtime = _ls_time(match["month"], match["day"], match["when"], now)
    return LsEntry(kind, int(match["size"]), mtime, name)
