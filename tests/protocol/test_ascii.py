"""TYPE A line-ending codecs: the result must not depend on where chunks break."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fileferry.protocol.ascii import FromNetwork, ToNetwork


def chunks_of(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    out, start = [], 0
    for p in points:
        out.append(data[start:p])
        start = p
    out.append(data[start:])
    return out


def to_network(chunks: list[bytes]) -> bytes:
    codec = ToNetwork()
    return b"".join(codec.convert(c) for c in chunks)


def from_network(chunks: list[bytes]) -> bytes:
    codec = FromNetwork()
    return b"".join(codec.convert(c) for c in chunks) + codec.flush()


# --- ToNetwork ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"", b""),
        (b"abc", b"abc"),
        (b"a\nb\n", b"a\r\nb\r\n"),
        (b"\n\n", b"\r\n\r\n"),
        (b"a\r\nb", b"a\r\nb"),  # an existing CRLF is not doubled
        (b"a\rb", b"a\rb"),  # a lone CR is kept
        (b"a\r\r\nb", b"a\r\r\nb"),
        (b"\r", b"\r"),
    ],
)
def test_to_network(data, wire):
    assert to_network([data]) == wire


def test_to_network_crlf_split_across_chunks_is_not_doubled():
    assert to_network([b"a\r", b"\nb"]) == b"a\r\nb"


def test_to_network_cr_then_crlf_across_chunks():
    # The first CR is a lone CR; the second belongs to the CRLF.
    assert to_network([b"a\r", b"\r\nb"]) == b"a\r\r\nb"


def test_to_network_empty_chunk_keeps_the_pending_cr_state():
    assert to_network([b"a\r", b"", b"\nb"]) == b"a\r\nb"


def test_to_network_cr_state_is_only_the_last_byte():
    assert to_network([b"a\r", b"x", b"\nb"]) == b"a\rx\r\nb"


# --- FromNetwork ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "data"),
    [
        (b"", b""),
        (b"abc", b"abc"),
        (b"a\r\nb\r\n", b"a\nb\n"),
        (b"a\rb", b"a\rb"),  # lone CR kept
        (b"a\nb", b"a\nb"),  # bare LF kept
        (b"a\r\r\nb", b"a\r\nb"),
        (b"a\r", b"a\r"),  # trailing CR comes out at flush
    ],
)
def test_from_network(wire, data):
    assert from_network([wire]) == data


def test_from_network_holds_a_trailing_cr():
    codec = FromNetwork()
    assert codec.convert(b"a\r") == b"a"
    assert codec.convert(b"\nb") == b"\nb"
    assert codec.flush() == b""


def test_from_network_lone_cr_released_by_next_chunk():
    codec = FromNetwork()
    assert codec.convert(b"a\r") == b"a"
    assert codec.convert(b"b") == b"\rb"


def test_from_network_flush_releases_the_cr_once():
    codec = FromNetwork()
    assert codec.convert(b"\r") == b""
    assert codec.flush() == b"\r"
    assert codec.flush() == b""


def test_from_network_empty_chunk_keeps_the_pending_cr():
    codec = FromNetwork()
    assert codec.convert(b"a\r") == b"a"
    assert codec.convert(b"") == b""
    assert codec.convert(b"\n") == b"\n"


def test_from_network_cr_runs():
    assert from_network([b"\r", b"\r", b"\r", b"\n"]) == b"\r\r\n"


# --- properties -----------------------------------------------------------------------

crlf_bytes = st.binary(max_size=60).map(
    lambda b: bytes(b"a\r\n"[x % 3] for x in b)  # mostly CRs and LFs, to find the edge cases
)
any_bytes = st.one_of(crlf_bytes, st.binary(max_size=60))
cut_lists = st.lists(st.integers(0, 60), max_size=12)


@settings(max_examples=300, deadline=None)
@given(data=any_bytes, cuts=cut_lists)
def test_to_network_does_not_depend_on_chunking(data, cuts):
    whole = to_network([data])
    assert to_network(chunks_of(data, cuts)) == whole
    for i in range(len(data) + 1):
        assert to_network([data[:i], data[i:]]) == whole, i
    assert to_network([bytes([b]) for b in data]) == whole


@settings(max_examples=300, deadline=None)
@given(data=any_bytes, cuts=cut_lists)
def test_from_network_does_not_depend_on_chunking(data, cuts):
    whole = from_network([data])
    assert from_network(chunks_of(data, cuts)) == whole
    for i in range(len(data) + 1):
        assert from_network([data[:i], data[i:]]) == whole, i
    assert from_network([bytes([b]) for b in data]) == whole


@settings(max_examples=300, deadline=None)
@given(data=any_bytes, cuts=cut_lists)
def test_to_network_output_has_no_bare_lf(data, cuts):
    wire = to_network(chunks_of(data, cuts))
    assert wire.count(b"\n") == wire.count(b"\r\n")
    assert wire.count(b"\n") == data.count(b"\n")


lf_text = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b""))


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(lf_text, crlf_bytes.map(lambda b: b.replace(b"\r", b""))), d=st.data())
def test_lf_text_round_trips_in_random_chunks(data, d):
    wire = to_network(chunks_of(data, d.draw(cut_lists)))
    assert wire == data.replace(b"\n", b"\r\n")
    back_cuts = d.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    assert from_network(chunks_of(wire, back_cuts)) == data


@settings(max_examples=300, deadline=None)
@given(data=any_bytes, d=st.data())
def test_text_without_crlf_round_trips_in_random_chunks(data, d):
    # Lone CRs survive too; only a CRLF already in the file is not preserved.
    while b"\r\n" in data:
        data = data.replace(b"\r\n", b"\n")
    wire = to_network(chunks_of(data, d.draw(cut_lists)))
    assert from_network(chunks_of(wire, d.draw(cut_lists))) == data
