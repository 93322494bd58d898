"""Reading listings back: what protocol.listing writes, listparse reads, and hostile
text costs nothing but a None."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fileferry.protocol.listing import (
    DEFAULT_FACTS,
    format_mdtm,
    list_line,
    mlsd_line,
    parse_mdtm,
)
from fileferry.protocol.listparse import LsEntry, parse_facts, parse_ls, parse_size, split_mlsx

UTC = dt.UTC
NOW = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Entry:
    name: str
    size: int = 0
    mtime: float = 0.0
    mode: int = 0o644
    unique: str | None = None
    is_dir: bool = False


# --- examples -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("12", 12), (" 12 ", 12), ("", None), ("-1", None), ("²", None), ("1e3", None)],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


def test_parse_facts():
    assert parse_facts("Type=file;SIZE=12;modify=20240102030405;;junk;") == {
        "type": "file",
        "size": "12",
        "modify": "20240102030405",
    }


def test_split_mlsx():
    assert split_mlsx("type=file; a b;c") == ({"type": "file"}, "a b;c")
    assert split_mlsx("type=file;") is None
    assert split_mlsx("type=file; ") is None


def test_parse_ls_recent_old_and_link():
    line = "-rw-r--r--   1 ftp ftp        1234 Feb 28 13:45 my file.txt"
    assert parse_ls(line, NOW) == LsEntry(
        "-", 1234, dt.datetime(2024, 2, 28, 13, 45, tzinfo=UTC).timestamp(), "my file.txt"
    )
    # Later in the year than now: last year's.
    late = parse_ls("-rw-r--r-- 1 a b 1 Dec 24 10:00 x", NOW)
    assert late is not None
    assert late.mtime == dt.datetime(2023, 12, 24, 10, 0, tzinfo=UTC).timestamp()
    old = parse_ls("drwxr-xr-x 2 0 0 4096 Dec 31  2019 archive", NOW)
    assert old == LsEntry("d", 4096, dt.datetime(2019, 12, 31, tzinfo=UTC).timestamp(), "archive")
    assert parse_ls("lrwxrwxrwx 1 a b 3 jan  1 00:00 ln -> target", NOW) == LsEntry(
        "l", 3, dt.datetime(2024, 1, 1, tzinfo=UTC).timestamp(), "ln"
    )


@pytest.mark.parametrize(
    "line",
    [
        "total 12",
        "",
        "-rw-r--r-- 1 a b \u0661\u0662 Feb 28 13:45 arabic-digit size",
        "-rw-r--r-- 1 a b 12 Feb \u0662\u0668 13:45 arabic-digit day",
    ],
)
def test_parse_ls_refuses(line):
    assert parse_ls(line, NOW) is None


@pytest.mark.parametrize(
    "line", ["-rw-r--r-- 1 a b 1 Foo 28 13:45 x", "-rw-r--r-- 1 a b 1 Feb 31 13:45 x"]
)
def test_an_impossible_date_is_no_date(line):
    entry = parse_ls(line, NOW)
    assert entry is not None and entry.mtime is None and entry.name == "x"


# --- round trips --------------------------------------------------------------------------

names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n/"), min_size=1, max_size=20
).filter(lambda n: n.strip() == n and n not in (".", ".."))
# 1980 to 2100, whole seconds: what MDTM can say.
times = st.integers(315_532_800, 4_102_444_800).map(float)


@settings(max_examples=300, deadline=None)
@given(name=names, size=st.integers(0, 2**63 - 1), mtime=times, is_dir=st.booleans())
def test_mlsd_lines_read_back(name, size, mtime, is_dir):
    entry = Entry(name, size, mtime, 0o750, "u1", is_dir)
    split = split_mlsx(mlsd_line(entry, DEFAULT_FACTS, "elradfmwMT"))
    assert split is not None
    facts, got = split
    assert got == name
    assert facts["type"] == ("dir" if is_dir else "file")
    assert parse_size(facts["size"]) == size
    assert parse_mdtm(facts["modify"]) == mtime
    assert facts["modify"] == format_mdtm(mtime)
    assert facts["unix.mode"] == "0750"


@settings(max_examples=300, deadline=None)
@given(
    name=names.filter(lambda n: " -> " not in n),
    size=st.integers(0, 2**63 - 1),
    mtime=times,
    is_dir=st.booleans(),
    now=times,
)
def test_ls_lines_read_back(name, size, mtime, is_dir, now):
    line = list_line(Entry(name, size, mtime, 0o644, None, is_dir), now)
    got = parse_ls(line, dt.datetime.fromtimestamp(now, UTC))
    assert got is not None
    assert (got.type, got.size, got.name) == ("d" if is_dir else "-", size, name)
    when = dt.datetime.fromtimestamp(mtime, UTC)
    if abs(now - mtime) >= 182 * 86400:
        # Six months or more away: the day and the year, no time.
        assert got.mtime == dt.datetime(when.year, when.month, when.day, tzinfo=UTC).timestamp()
    elif mtime <= now and (when.month, when.day) != (2, 29):
        # Recent: to the minute, in the right year. (A future time or a leap
        # day without a year is a guess the format cannot get right.)
        assert got.mtime == mtime // 60 * 60


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=120))
def test_hostile_lines_give_none_or_an_entry(line):
    entry = parse_ls(line, NOW)
    if entry is not None:
        assert entry.size >= 0 and entry.name
    split = split_mlsx(line)
    if split is not None:
        facts, name = split
        assert name
        parse_size(facts.get("size", ""))
