"""``ListingRenderer``: whole listings from rows, byte for byte the per-entry formatters.

The renderer caches column prefixes and dates (keyed by minute, skipping the
minutes around the six-month cut-offs), so these tests compare it with
``list_line``/``mlsd_line``/``encode_lines`` on awkward inputs: both sides of
the cut-offs, NaN and huge times, directories, undecodable names, the cap.
"""

from __future__ import annotations

import datetime as dt
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from fileferry.protocol.listing import (
    DEFAULT_FACTS,
    ListingRenderer,
    Row,
    encode_lines,
    list_line,
    mlsd_line,
)
from fileferry.storage.base import FileInfo, FileKind

NOW = dt.datetime(2024, 6, 15, 12, 0, 0, tzinfo=dt.UTC).timestamp()
SIX = 182 * 24 * 3600


def info(row: Row) -> FileInfo:
    name, is_dir, size, mtime, mode, unique = row
    return FileInfo(name, FileKind.DIR if is_dir else FileKind.FILE, size, mtime, mode, unique)


def reference(rows: list[Row], fmt: str, cap: int | None = None) -> bytes:
    """What the handler produced before the renderer existed."""
    entries = sorted((info(r) for r in rows), key=lambda e: e.name)[:cap]
    if fmt == "LIST":
        lines = [list_line(e, NOW) for e in entries]
    elif fmt == "NLST":
        lines = [e.name for e in entries]
    else:
        lines = [mlsd_line(e, DEFAULT_FACTS, "elradfmw") for e in entries]
    return encode_lines(lines)


def render(rows: list[Row], fmt: str, cap: int | None = None) -> bytes:
    r = ListingRenderer(fmt, NOW, DEFAULT_FACTS, "elradfmw", cap)
    return r(list(rows)).payload


AWKWARD_TIMES = [
    NOW,
    NOW - 60,
    NOW - SIX,
    NOW - SIX + 1,
    NOW - SIX - 0.5,
    NOW - SIX + 59.999,
    NOW + SIX,
    NOW + SIX - 1e-6,
    NOW + 10 * SIX,
    0.0,
    -1.5,
    1e300,
    math.nan,
    math.inf,
    -math.inf,
]


def awkward_rows() -> list[Row]:
    rows: list[Row] = []
    for i, mtime in enumerate(AWKWARD_TIMES):
        rows.append((f"f{i:02d}", False, i * 1000, mtime, 0o644, f"u{i}"))
        rows.append((f"d{i:02d}", True, 4096, mtime, 0o755, None))
    rows += [
        ("caf\udce9.txt", False, 3, NOW, 0o600, None),  # not UTF-8 on disk
        ("ünï", False, 2**63 - 1, NOW - 1, 0o4755, "x"),
        ("sticky", True, 0, NOW - 7200, 0o1777, "y"),
        ("a name with spaces", False, 0, NOW - 30, 0o000, None),
    ]
    return rows


def test_list_matches_list_line_on_awkward_times_and_names() -> None:
    rows = awkward_rows()
    assert render(rows, "LIST") == reference(rows, "LIST")


def test_mlsd_and_nlst_match_the_per_entry_formatters() -> None:
    rows = awkward_rows()
    assert render(rows, "MLSD") == reference(rows, "MLSD")
    assert render(rows, "NLST") == reference(rows, "NLST")


def test_undecodable_names_keep_their_raw_bytes() -> None:
    payload = render([("caf\udce9", False, 1, NOW, 0o644, None)], "NLST")
    assert payload == b"caf\xe9\r\n"


def test_cap_sorts_first_then_cuts_and_says_so() -> None:
    rows: list[Row] = [(f"n{i}", False, i, NOW, 0o644, None) for i in (5, 3, 9, 1, 7)]
    r = ListingRenderer("NLST", NOW, cap=3)(list(rows))
    assert (r.payload, r.count, r.truncated) == (b"n1\r\nn3\r\nn5\r\n", 3, True)
    exact = ListingRenderer("NLST", NOW, cap=5)(list(rows))
    assert (exact.count, exact.truncated) == (5, False)
    assert render(rows, "LIST", cap=3) == reference(rows, "LIST", cap=3)


def test_empty_listing_is_empty() -> None:
    r = ListingRenderer("LIST", NOW, cap=10)([])
    assert (r.payload, r.count, r.truncated) == (b"", 0, False)


def test_hints_for_backends() -> None:
    assert ListingRenderer("NLST").names_only
    assert not ListingRenderer("LIST").names_only
    assert not ListingRenderer("LIST").needs_unique
    assert ListingRenderer("MLSD", facts=("unique",)).needs_unique
    assert not ListingRenderer("MLSD", facts=("size",)).needs_unique


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=8).filter(lambda s: "\r" not in s and "\n" not in s),
            st.booleans(),
            st.integers(0, 2**63 - 1),
            st.one_of(
                st.floats(allow_nan=True, allow_infinity=True),
                st.floats(NOW - 2 * SIX, NOW + 2 * SIX),
                st.sampled_from(AWKWARD_TIMES),
            ),
            st.integers(0, 0o7777),
            st.one_of(st.none(), st.text(max_size=4)),
        ),
        unique_by=lambda r: r[0],
        max_size=30,
    ),
    st.sampled_from(["LIST", "NLST", "MLSD"]),
)
def test_renderer_equals_reference(rows: list[Row], fmt: str) -> None:
    assert render(rows, fmt) == reference(rows, fmt)
