"""Listing formats: ``ls -l`` lines clients can parse, MLSD facts, MDTM times."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fileferry.protocol.listing import (
    ALL_FACTS,
    DEFAULT_FACTS,
    encode_lines,
    feat_mlst,
    format_mdtm,
    list_line,
    mlsd_line,
    mlsx_facts,
    mode_string,
    parse_mdtm,
    perm_fact,
)


@dataclass(frozen=True)
class Entry:
    name: str
    size: int = 0
    mtime: float = 0.0
    mode: int = 0o644
    unique: str | None = None
    is_dir: bool = False


def ts(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


NOW = ts(2024, 6, 15, 12, 0, 0)
MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"

# The shape ftplib users, lftp and FileZilla accept for a Unix listing line.
LS_RE = re.compile(
    r"^(?P<mode>[-dl][-r][-w][-xsS][-r][-w][-xsS][-r][-w][-xtT])\s+"
    r"(?P<links>\d+)\s+(?P<owner>\S+)\s+(?P<group>\S+)\s+(?P<size>\d+)\s+"
    rf"(?P<month>{MONTHS})\s+(?P<day>\d{{1,2}})\s+"
    r"(?:(?P<hour>\d{2}):(?P<minute>\d{2})|(?P<year>\d{4})) "
    r"(?P<name>.+)$",
    re.S,
)


def parse_ls(line: str) -> dict[str, str]:
    m = LS_RE.match(line)
    assert m is not None, line
    return m.groupdict()


# --- ls -l ----------------------------------------------------------------------------


def test_recent_file():
    line = list_line(Entry("report.txt", 1234, ts(2024, 6, 1, 8, 5, 59), 0o644), NOW)
    assert line == "-rw-r--r--   1 ftp      ftp              1234 Jun  1 08:05 report.txt"
    got = parse_ls(line)
    assert got["mode"] == "-rw-r--r--"
    assert got["links"] == "1"
    assert (got["owner"], got["group"]) == ("ftp", "ftp")
    assert got["size"] == "1234"
    assert (got["month"], got["day"], got["hour"], got["minute"]) == ("Jun", "1", "08", "05")
    assert got["year"] is None
    assert got["name"] == "report.txt"


def test_old_file_shows_the_year():
    line = list_line(Entry("old.tar", 5, ts(2020, 1, 2, 3, 4, 5)), NOW)
    got = parse_ls(line)
    assert (got["month"], got["day"], got["year"]) == ("Jan", "2", "2020")
    assert got["hour"] is None
    assert "Jan  2  2020 old.tar" in line


def test_far_future_file_shows_the_year():
    got = parse_ls(list_line(Entry("f", 0, ts(2030, 12, 31)), NOW))
    assert (got["month"], got["day"], got["year"]) == ("Dec", "31", "2030")


def test_six_month_boundary():
    six_months = 182 * 24 * 3600
    assert parse_ls(list_line(Entry("a", mtime=NOW - six_months + 1), NOW))["hour"] is not None
    assert parse_ls(list_line(Entry("a", mtime=NOW - six_months), NOW))["year"] is not None


def test_directory():
    got = parse_ls(list_line(Entry("docs", 4096, NOW - 60, 0o755, is_dir=True), NOW))
    assert got["mode"] == "drwxr-xr-x"
    assert got["links"] == "2"
    assert got["name"] == "docs"


@pytest.mark.parametrize(
    ("mode", "is_dir", "text"),
    [
        (0o644, False, "-rw-r--r--"),
        (0o100644, False, "-rw-r--r--"),  # file-type bits are ignored
        (0o040755, True, "drwxr-xr-x"),
        (0o4755, False, "-rwsr-xr-x"),
        (0o2755, False, "-rwxr-sr-x"),
        (0o1777, True, "drwxrwxrwt"),
        (0o1776, True, "drwxrwxrwT"),
        (0, False, "----------"),
        (0o777, False, "-rwxrwxrwx"),
    ],
)
def test_mode_string(mode, is_dir, text):
    assert mode_string(mode, is_dir) == text
    assert parse_ls(list_line(Entry("x", mode=mode, is_dir=is_dir), NOW))["mode"] == text


@pytest.mark.parametrize("name", ["my file.txt", "  lead", "trail  ", "a  b", "-rf", "2024 x"])
def test_names_with_spaces_survive(name):
    assert parse_ls(list_line(Entry(name, 1, NOW), NOW))["name"] == name
    assert parse_ls(list_line(Entry(name, 1, ts(2001, 1, 1)), NOW))["name"] == name


def test_huge_size():
    got = parse_ls(list_line(Entry("big", 2**63 - 1, NOW), NOW))
    assert int(got["size"]) == 2**63 - 1


@pytest.mark.parametrize("mtime", [math.nan, math.inf, -math.inf, 1e20, -1e20])
def test_impossible_mtimes_do_not_raise(mtime):
    got = parse_ls(list_line(Entry("x", 1, mtime), NOW))
    assert got["name"] == "x"


def test_undecodable_names_go_back_to_raw_bytes():
    lines = [
        list_line(Entry("caf\udce9.txt", 3, NOW), NOW),
        list_line(Entry("ünï", 3, NOW), NOW),
    ]
    wire = encode_lines(lines)
    assert wire.endswith(b"\r\n")
    rows = wire.split(b"\r\n")
    assert rows[0].endswith(b" caf\xe9.txt")
    assert rows[1].endswith(" ünï".encode())
    assert rows[2] == b""


def test_encode_lines():
    assert encode_lines([]) == b""
    assert encode_lines(["a", "b c"]) == b"a\r\nb c\r\n"


names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"), exclude_characters="/"),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(
    name=names,
    size=st.integers(0, 2**63 - 1),
    mtime=st.integers(0, 4_102_444_800),  # 1970 to 2100
    mode=st.integers(0, 0o7777),
    is_dir=st.booleans(),
)
def test_any_entry_parses_back(name, size, mtime, mode, is_dir):
    entry = Entry(name, size, float(mtime), mode, None, is_dir)
    got = parse_ls(list_line(entry, NOW))
    when = dt.datetime.fromtimestamp(mtime, tz=dt.UTC)
    assert got["name"] == name
    assert int(got["size"]) == size
    assert got["mode"] == mode_string(mode, is_dir)
    assert got["mode"][0] == ("d" if is_dir else "-")
    assert got["month"] == MONTHS.split("|")[when.month - 1]
    assert int(got["day"]) == when.day
    if got["year"] is not None:
        assert int(got["year"]) == when.year
        assert abs(NOW - mtime) >= 182 * 24 * 3600
    else:
        assert (int(got["hour"]), int(got["minute"])) == (when.hour, when.minute)
        assert abs(NOW - mtime) < 182 * 24 * 3600


# --- MLSD facts -----------------------------------------------------------------------

FULL = "elradfmwMT"
READ_ONLY = "elr"


def parse_facts(line: str) -> tuple[dict[str, str], str]:
    facts, sep, name = line.partition(" ")
    assert sep == " "
    assert facts.endswith(";")
    out = {}
    for fact in facts[:-1].split(";"):
        key, eq, value = fact.partition("=")
        assert eq == "="
        out[key.lower()] = value
    return out, name


def test_mlsd_file_all_facts():
    entry = Entry("report.txt", 10, ts(2024, 6, 1, 8, 5, 0), 0o644, "803g1a", False)
    line = mlsd_line(entry, DEFAULT_FACTS, FULL)
    assert line == (
        "type=file;size=10;modify=20240601080500;perm=adfrw;unique=803g1a;UNIX.mode=0644;"
        " report.txt"
    )


def test_mlsd_dir_read_only():
    entry = Entry("docs", 4096, ts(2001, 2, 3, 4, 5, 6), 0o755, None, True)
    facts, name = parse_facts(mlsd_line(entry, DEFAULT_FACTS, READ_ONLY))
    assert name == "docs"
    assert facts == {
        "type": "dir",
        "size": "4096",
        "modify": "20010203040506",
        "perm": "el",
        "unix.mode": "0755",
    }  # no unique fact when the backend has none


def test_mlsx_kind_override_and_fact_selection():
    entry = Entry("x", 1, 0.0, 0o700, "u1", True)
    assert mlsx_facts(entry, ("type",), FULL, kind="cdir") == "type=cdir;"
    assert mlsx_facts(entry, ("size", "type"), FULL) == "size=1;type=dir;"
    assert mlsx_facts(entry, (), FULL) == ""
    assert mlsx_facts(entry, ("unix.mode",), FULL) == "UNIX.mode=0700;"
    assert mlsx_facts(entry, ("unknown", "unique"), FULL) == "unique=u1;"


def test_mlsd_name_with_spaces_and_semicolons():
    facts, name = parse_facts(mlsd_line(Entry("a b;c=d", 1), ("type", "size"), FULL))
    assert name == "a b;c=d"
    assert facts == {"type": "file", "size": "1"}


@pytest.mark.parametrize(
    ("is_dir", "letters", "perm"),
    [
        (False, FULL, "adfrw"),
        (False, READ_ONLY, "r"),
        (False, "", ""),
        (False, "el", ""),
        (False, "w", "w"),
        (False, "a", "a"),
        (True, FULL, "cdpeflm"),
        (True, READ_ONLY, "el"),
        (True, "", ""),
        (True, "r", ""),
        (True, "w", "c"),
        (True, "d", "dp"),
        (True, "m", "m"),
    ],
)
def test_perm_fact(is_dir, letters, perm):
    assert perm_fact(is_dir, letters) == perm


@settings(max_examples=100, deadline=None)
@given(letters=st.text(alphabet=FULL, max_size=12), is_dir=st.booleans())
def test_perm_fact_only_grants_what_the_letters_allow(letters, is_dir):
    perm = perm_fact(is_dir, letters)
    allowed = set("cdpeflm") if is_dir else set("adfrw")
    assert set(perm) <= allowed
    assert len(perm) == len(set(perm))
    # Writing needs w; deleting needs d; reading a file needs r.
    assert ("w" in perm or "c" in perm) == ("w" in letters)
    assert ("d" in perm) == ("d" in letters)
    if not is_dir:
        assert ("r" in perm) == ("r" in letters)


def test_feat_mlst():
    assert feat_mlst(DEFAULT_FACTS) == "MLST type*;size*;modify*;perm*;unique*;UNIX.mode*;"
    assert feat_mlst(("type",)) == "MLST type*;size;modify;perm;unique;UNIX.mode;"
    assert feat_mlst(()) == "MLST " + "".join(
        ("UNIX.mode" if f == "unix.mode" else f) + ";" for f in ALL_FACTS
    )


# --- MDTM -----------------------------------------------------------------------------


def test_format_mdtm():
    assert format_mdtm(0) == "19700101000000"
    assert format_mdtm(ts(2024, 6, 1, 8, 5, 9)) == "20240601080509"
    assert format_mdtm(ts(2024, 6, 1, 8, 5, 9) + 0.999) == "20240601080509"


@pytest.mark.parametrize("bad", [math.nan, math.inf, 1e20, -1e20])
def test_format_mdtm_impossible_times_fall_back_to_the_epoch(bad):
    assert format_mdtm(bad) == "19700101000000"


def test_parse_mdtm():
    assert parse_mdtm("20240601080509") == ts(2024, 6, 1, 8, 5, 9)
    assert parse_mdtm("19700101000000") == 0.0
    assert parse_mdtm("20240601080509.5") == ts(2024, 6, 1, 8, 5, 9) + 0.5
    assert parse_mdtm("20240601080509.125") == ts(2024, 6, 1, 8, 5, 9) + 0.125


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "2024",
        "2024060108050",
        "202406010805090",
        "20241301000000",  # month 13
        "20240230000000",  # 30 February
        "20240601250000",  # hour 25
        "00000101000000",  # year 0
        "2024060108050x",
        "-2024060108050",
        "+2024060108050",
        " 20240601080509",
        "20240601080509.x",
        "20240601080509.-1",
        "20240601080509.1.2",
        "2024-06-01T08:05:09",
    ],
)
def test_parse_mdtm_rejects(bad):
    with pytest.raises(ValueError):
        parse_mdtm(bad)


@settings(max_examples=200, deadline=None)
@given(st.integers(int(ts(1, 1, 1)), int(ts(9999, 12, 31, 23, 59, 59))))
def test_mdtm_round_trip(seconds):
    text = format_mdtm(seconds)
    assert len(text) == 14
    assert text.isdigit()
    assert parse_mdtm(text) == seconds


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_parse_mdtm_raises_only_value_error(text):
    with contextlib.suppress(ValueError):
        parse_mdtm(text)
