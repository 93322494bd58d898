"""Directory listing formats: ``ls -l`` for LIST, facts for MLSD/MLST, names for NLST.

LIST has no standard format; clients (ftplib users, curl, lftp, FileZilla,
WinSCP) all parse the Unix ``ls -l`` shape, so that is what is produced, with
English month names whatever the locale and times in UTC. Owner and group are
shown as ``ftp`` so that listings never leak host account names.

MLSD/MLST (RFC 3659) are the machine-readable alternative; the ``perm`` fact
is derived from the account's permission letters, so a client is told what
it may really do.

The protocol core may not read clocks, so callers pass ``now``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import stat as _stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Protocol

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SIX_MONTHS = 182 * 24 * 3600

#: Facts fileferry can report, in FEAT order; ``*`` marks those enabled by default.
ALL_FACTS = ("type", "size", "modify", "perm", "unique", "unix.mode")
DEFAULT_FACTS = ("type", "size", "modify", "perm", "unique", "unix.mode")


class Entry(Protocol):
    """The part of ``storage.FileInfo`` a listing needs (kept structural on purpose)."""

    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def mtime(self) -> float: ...
    @property
    def mode(self) -> int: ...
    @property
    def unique(self) -> str | None: ...
    @property
    def is_dir(self) -> bool: ...


#: One directory entry as a plain tuple: ``(name, is_dir, size, mtime, mode, unique)``.
#: The same layout as ``storage.base.Row`` (kept structural, like :class:`Entry`):
#: a listing of 10,000 entries then costs 10,000 tuples, not 10,000 objects with
#: attribute lookups.
Row = tuple[str, bool, int, float, int, "str | None"]

_NAME = itemgetter(0)


def _utc(ts: float) -> _dt.datetime:
    try:
        return _dt.datetime.fromtimestamp(ts, tz=_dt.UTC)
    except (OverflowError, OSError, ValueError):
        return _dt.datetime.fromtimestamp(0, tz=_dt.UTC)


def format_mdtm(ts: float) -> str:
    """``YYYYMMDDHHMMSS`` in UTC, as MDTM (RFC 3659) and the ``modify`` fact want."""
    when = _utc(ts)
    # Not strftime("%Y"): glibc does not zero-pad years below 1000 (MFMT can set them).
    return f"{when.year:04d}{when:%m%d%H%M%S}"


def parse_mdtm(text: str) -> float:
    """Parse ``YYYYMMDDHHMMSS[.sss]`` (UTC) into a timestamp; ``ValueError`` if bad."""
    main, _, frac = text.partition(".")
    if len(main) != 14 or not main.isdigit() or (frac and not frac.isdigit()):
        raise ValueError("bad time value")
    when = _dt.datetime.strptime(main, "%Y%m%d%H%M%S").replace(tzinfo=_dt.UTC)
    return when.timestamp() + (int(frac) / 10 ** len(frac) if frac else 0.0)


@functools.lru_cache(maxsize=1024)
def mode_string(mode: int, is_dir: bool) -> str:
    """``drwxr-xr-x`` style permission text (cached: a folder has few distinct modes)."""
    kind = "d" if is_dir else "-"
    return kind + _stat.filemode(mode & 0o7777)[1:]


@functools.lru_cache(maxsize=4096)
def _stamp(minute: int, recent: bool) -> str:
    """The date column for a time in ``minute`` (minutes since the epoch).

    LIST shows minutes at best, so entries written in the same minute share
    one cached string: a 10,000-entry listing formats a handful of dates
    instead of 10,000.
    """
    when = _utc(minute * 60)
    if recent:
        return f"{_MONTHS[when.month - 1]} {when.day:2d} {when.hour:02d}:{when.minute:02d}"
    return f"{_MONTHS[when.month - 1]} {when.day:2d}  {when.year}"


def list_line(entry: Entry, now: float) -> str:
    """One ``ls -l`` line, without the line ending."""
    mtime = entry.mtime
    try:
        minute = int(mtime // 60)
    except (OverflowError, ValueError):
        minute = 0
    stamp = _stamp(minute, abs(now - mtime) < _SIX_MONTHS)
    is_dir = entry.is_dir
    mode = mode_string(entry.mode, is_dir)
    links = 2 if is_dir else 1
    return f"{mode} {links:3d} ftp      ftp      {entry.size:>12d} {stamp} {entry.name}"


def perm_fact(is_dir: bool, letters: str) -> str:
    """RFC 3659 ``perm`` from pyftpdlib-style permission letters ``elradfmwMT``."""
    out = []
    if is_dir:
        if "w" in letters:
            out.append("c")
        if "d" in letters:
            out += ["d", "p"]
        if "e" in letters:
            out.append("e")
        if "f" in letters:
            out.append("f")
        if "l" in letters:
            out.append("l")
        if "m" in letters:
            out.append("m")
    else:
        if "a" in letters:
            out.append("a")
        if "d" in letters:
            out.append("d")
        if "f" in letters:
            out.append("f")
        if "r" in letters:
            out.append("r")
        if "w" in letters:
            out.append("w")
    return "".join(out)


def mlsx_facts(
    entry: Entry,
    facts: Sequence[str],
    letters: str,
    kind: str | None = None,
) -> str:
    """The ``fact=value;`` string for one entry (no name). ``kind`` overrides ``type``."""
    parts: list[str] = []
    for fact in facts:
        if fact == "type":
            parts.append(f"type={kind or ('dir' if entry.is_dir else 'file')}")
        elif fact == "size":
            parts.append(f"size={entry.size}")
        elif fact == "modify":
            parts.append(f"modify={format_mdtm(entry.mtime)}")
        elif fact == "perm":
            parts.append(f"perm={perm_fact(entry.is_dir, letters)}")
        elif fact == "unique" and entry.unique:
            parts.append(f"unique={entry.unique}")
        elif fact == "unix.mode":
            parts.append(f"UNIX.mode=0{entry.mode & 0o7777:o}")
    return "".join(p + ";" for p in parts)


def mlsd_line(entry: Entry, facts: Sequence[str], letters: str) -> str:
    return f"{mlsx_facts(entry, facts, letters)} {entry.name}"


def feat_mlst(selected: Iterable[str]) -> str:
    """The ``MLST`` FEAT line: every fact, those selected starred."""
    chosen = set(selected)
    names = {"unix.mode": "UNIX.mode"}
    return "MLST " + "".join(f"{names.get(f, f)}{'*' if f in chosen else ''};" for f in ALL_FACTS)


def encode_lines(lines: Iterable[str]) -> bytes:
    """Join listing lines with CRLF, keeping undecodable names' raw bytes."""
    lines = list(lines)
    text = "\r\n".join(lines) + "\r\n" if lines else ""
    return text.encode("utf-8", "surrogateescape")


# --- whole listings from rows -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendered:
    """A listing ready for the data channel."""

    payload: bytes
    #: Entries in ``payload`` (after the cap).
    count: int
    #: More entries existed than the cap allowed.
    truncated: bool


@dataclass(frozen=True, slots=True)
class ListingRenderer:
    """Turns a directory's rows into one encoded payload: sort, cap, format, join.

    This is a plain function of its rows, so a storage backend may run it in
    the thread where it gathered them (see ``Storage.list_rendered``): the
    event loop then never touches the entries one by one. The output is byte
    for byte what :func:`list_line`, :func:`mlsd_line` and :func:`encode_lines`
    give for the same entries; the per-entry work is only cheaper (cached
    column prefixes and dates, no objects per entry).
    """

    #: ``"LIST"``, ``"NLST"`` or ``"MLSD"``.
    format: str
    #: The clock, for LIST's "recent" date column.
    now: float = 0.0
    #: MLSD facts and the account's permission letters (for ``perm``).
    facts: tuple[str, ...] = ()
    letters: str = ""
    #: At most this many entries are formatted; ``None`` for no cap.
    cap: int | None = None

    @property
    def names_only(self) -> bool:
        """Only names are used: a backend may skip its per-entry stat."""
        return self.format == "NLST"

    @property
    def needs_unique(self) -> bool:
        """The ``unique`` field is printed: otherwise a backend may leave it ``None``."""
        return self.format == "MLSD" and "unique" in self.facts

    def __call__(self, rows: list[Row]) -> Rendered:
        cap = self.cap
        truncated = cap is not None and len(rows) > cap
        # A key function (in C) sorts by name alone, stably, as sorting entries did.
        rows.sort(key=_NAME)
        if cap is not None:
            del rows[cap:]
        count = len(rows)
        # Formatted and encoded a slice at a time, each slice's rows released
        # as it goes: the whole listing never exists three times over (rows,
        # lines, text) beside its payload. This is what a 10,000-entry LIST
        # added to the server's peak memory.
        chunks: list[bytes] = []
        for start in range(0, count, _SLICE):
            part = rows[start : start + _SLICE]
            rows[start : start + _SLICE] = [None] * len(part)  # type: ignore[list-item]
            if self.format == "LIST":
                lines = _list_lines(part, self.now)
            elif self.format == "NLST":
                lines = [row[0] for row in part]
            else:
                lines = _mlsd_lines(part, self.facts, self.letters)
            del part
            chunks.append(encode_lines(lines))
            del lines
        rows.clear()
        payload = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return Rendered(payload, count, truncated)


#: Rows formatted per slice by :class:`ListingRenderer`.
_SLICE = 1024


def _list_lines(rows: list[Row], now: float) -> list[str]:
    """:func:`list_line` for many rows, with the column prefix and date cached.

    The date column depends on the minute and on whether the entry is
    within six months of ``now``; that second part is constant across a
    minute except in the few minutes around the two cut-off instants, so
    the cache is keyed by minute alone and those minutes are never cached
    (they take the exact path, as :func:`list_line` does). ``{size:12}``
    right-aligns an int like ``{size:>12d}`` but parses a shorter format
    spec, which is measurable at 10,000 lines.
    """
    heads: tuple[dict[int, str], dict[int, str]] = ({}, {})
    six = _SIX_MONTHS
    edges = ((now - six) // 60, (now + six) // 60)
    unsafe = {edge + step for edge in edges for step in (-1, 0, 1)}
    stamps: dict[float, str] = {}
    get_stamp = stamps.get
    out: list[str] = []
    append = out.append
    for name, is_dir, size, mtime, mode, _ in rows:
        cache = heads[is_dir]
        head = cache.get(mode)
        if head is None:
            head = cache[mode] = (
                f"{mode_string(mode, is_dir)} {2 if is_dir else 1:3d} ftp      ftp      "
            )
        key = mtime // 60
        stamp = get_stamp(key)
        if stamp is None:
            try:
                minute = int(key)
            except (OverflowError, ValueError):
                minute = 0
            stamp = _stamp(minute, abs(now - mtime) < six)
            # NaN never finds itself again: do not fill the cache with it.
            if key == key and key not in unsafe:
                stamps[key] = stamp
        append(f"{head}{size:12} {stamp} {name}")
    return out


def _mlsd_lines(rows: list[Row], facts: Sequence[str], letters: str) -> list[str]:
    """:func:`mlsd_line` for many rows; ``perm`` and ``modify`` values are cached."""
    perms = (perm_fact(False, letters), perm_fact(True, letters))
    modified: dict[float, str] = {}
    out: list[str] = []
    append = out.append
    for name, is_dir, size, mtime, mode, unique in rows:
        text = ""
        for fact in facts:
            if fact == "type":
                text += "type=dir;" if is_dir else "type=file;"
            elif fact == "size":
                text += f"size={size};"
            elif fact == "modify":
                stamp = modified.get(mtime)
                if stamp is None:
                    stamp = format_mdtm(mtime)
                    if mtime == mtime:
                        modified[mtime] = stamp
                text += f"modify={stamp};"
            elif fact == "perm":
                text += f"perm={perms[is_dir]};"
            elif fact == "unique" and unique:
                text += f"unique={unique};"
            elif fact == "unix.mode":
                text += f"UNIX.mode=0{mode & 0o7777:o};"
        append(f"{text} {name}")
    return out
