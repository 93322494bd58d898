"""The control-channel line splitter: line endings, Telnet, caps, decoding, EOF."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fileferry.protocol.lines import (
    ENDLESS,
    IAC,
    MAX_LINE,
    TOO_LONG,
    LineReader,
    endless_bound,
)

IP, DM, NOP, AYT = 0xF4, 0xF2, 0xF1, 0xF6
WILL, WONT, DO, DONT = 0xFB, 0xFC, 0xFD, 0xFE


def drain(reader: LineReader) -> list[object]:
    out: list[object] = []
    while (line := reader.next_line()) is not None:
        out.append(line)
    return out


def feed_all(data: bytes, max_line: int = MAX_LINE, step: int | None = None) -> list[object]:
    reader = LineReader(max_line)
    if step is None:
        reader.feed(data)
    else:
        for i in range(0, len(data), step):
            reader.feed(data[i : i + step])
    return drain(reader)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    chunks, start = [], 0
    for p in points:
        chunks.append(data[start:p])
        start = p
    chunks.append(data[start:])
    return [c for c in chunks if c]  # an empty feed means EOF


# --- line endings -----------------------------------------------------------------


def test_crlf_lines():
    assert feed_all(b"USER alice\r\nPASS secret\r\n") == ["USER alice", "PASS secret"]


def test_bare_lf_lines():
    assert feed_all(b"USER alice\nPASS secret\n") == ["USER alice", "PASS secret"]


def test_mixed_endings_and_empty_lines():
    assert feed_all(b"NOOP\n\r\n\nSYST\r\n") == ["NOOP", "", "", "SYST"]


def test_only_one_trailing_cr_is_dropped_and_inner_cr_kept():
    assert feed_all(b"RETR a\rb\r\r\n") == ["RETR a\rb\r"]


def test_incomplete_line_is_kept_until_its_end_arrives():
    reader = LineReader()
    reader.feed(b"NOOP\r\nSY")
    assert drain(reader) == ["NOOP"]
    reader.feed(b"ST")
    assert reader.next_line() is None
    reader.feed(b"\r")
    assert reader.next_line() is None
    reader.feed(b"\n")
    assert drain(reader) == ["SYST"]


@pytest.mark.parametrize("data", [b"USER a\r\nPASS b\r\nNOOP\n", b"\r\n\r\n", b"x\ny\r\nz\n"])
def test_byte_by_byte_equals_all_at_once(data):
    assert feed_all(data, step=1) == feed_all(data)


def test_many_lines_in_one_feed():
    data = b"".join(b"NOOP %d\r\n" % i for i in range(500))
    assert feed_all(data) == [f"NOOP {i}" for i in range(500)]


# --- Telnet ---------------------------------------------------------------------------


def test_iac_ip_and_dm_before_abor_are_removed():
    data = bytes([IAC, IP, IAC, DM]) + b"ABOR\r\n"
    assert feed_all(data) == ["ABOR"]


@pytest.mark.parametrize("cmd", [IP, DM, NOP, AYT])
def test_two_byte_telnet_commands_inside_a_line(cmd):
    assert feed_all(b"NO" + bytes([IAC, cmd]) + b"OP\r\n") == ["NOOP"]


def test_iac_iac_is_one_ff_byte():
    # 0xFF alone is not UTF-8, so it survives as the surrogate for 0xFF.
    [line] = feed_all(b"RETR a" + bytes([IAC, IAC]) + b"b\r\n")
    assert line == "RETR a\udcffb"
    assert line.encode("utf-8", "surrogateescape") == b"RETR a\xffb"


@pytest.mark.parametrize("verb", [WILL, WONT, DO, DONT])
@pytest.mark.parametrize("option", [0x01, 0x18, ord("\n"), IAC])
def test_option_negotiation_is_three_bytes(verb, option):
    # The option byte is swallowed even if it looks like LF or IAC.
    assert feed_all(b"NO" + bytes([IAC, verb, option]) + b"OP\r\n") == ["NOOP"]


def test_telnet_sequences_split_across_feeds_at_every_point():
    data = (
        b"NO"
        + bytes([IAC, DO, 0x18])
        + b"OP"
        + bytes([IAC, IAC, IAC, IP, IAC, WILL, IAC])
        + b"!\r\n"
        + bytes([IAC, DM])
        + b"ABOR\r\n"
    )
    expected = ["NOOP\udcff!", "ABOR"]
    assert feed_all(data) == expected
    assert feed_all(data, step=1) == expected
    for i in range(1, len(data)):
        for j in range(i, len(data)):
            assert feed_all_chunks([data[:i], data[i:j], data[j:]]) == expected, (i, j)


def feed_all_chunks(chunks: list[bytes], max_line: int = MAX_LINE) -> list[object]:
    reader = LineReader(max_line)
    for chunk in chunks:
        if chunk:
            reader.feed(chunk)
    return drain(reader)


def test_iac_alone_at_end_of_a_feed_waits_for_its_command():
    reader = LineReader()
    reader.feed(b"NOOP" + bytes([IAC]))
    reader.feed(bytes([IAC]))
    reader.feed(b"\r\n")
    assert drain(reader) == ["NOOP\udcff"]


# --- the line cap ---------------------------------------------------------------------


def test_line_at_the_cap_is_accepted_and_one_byte_more_is_not():
    assert feed_all(b"x" * 10 + b"\n", max_line=10) == ["x" * 10]
    assert feed_all(b"x" * 11 + b"\n", max_line=10) == [TOO_LONG]
    assert feed_all(b"x" * 10 + b"\r\n", max_line=10) == ["x" * 10]
    assert feed_all(b"x" * 11 + b"\r\n", max_line=10) == [TOO_LONG]


def test_too_long_line_gives_one_marker_then_the_next_line_is_fine():
    data = b"x" * 50 + b"\r\nNOOP\r\n"
    assert feed_all(data, max_line=10) == [TOO_LONG, "NOOP"]
    assert feed_all(data, max_line=10, step=1) == [TOO_LONG, "NOOP"]
    assert feed_all(data, max_line=10, step=7) == [TOO_LONG, "NOOP"]


def test_two_too_long_lines_give_two_markers():
    data = b"y" * 20 + b"\n" + b"z" * 20 + b"\nSYST\n"
    assert feed_all(data, max_line=10, step=3) == [TOO_LONG, TOO_LONG, "SYST"]


def test_a_long_line_below_the_endless_bound_keeps_memory_capped():
    reader = LineReader()
    chunk = b"A" * 4096
    bound = endless_bound(reader.max_line)
    markers: list[object] = []
    for _ in range(bound // len(chunk) - 1):  # just under the bound, without a line end
        reader.feed(chunk)
        assert len(reader._buf) <= reader.max_line + 1  # + the CR of CRLF
        markers += drain(reader)
    assert markers == [TOO_LONG]  # one marker, as soon as the cap was passed
    reader.feed(b"A" * 100 + b"\r\nNOOP\r\n")
    assert len(reader._buf) <= reader.max_line + 1  # + the CR of CRLF
    assert drain(reader) == ["NOOP"]


def test_too_long_is_reported_as_soon_as_the_cap_is_passed():
    reader = LineReader(max_line=100)
    reader.feed(b"B" * 101)
    assert reader.next_line() is None  # the 101st byte may be the CR of a CRLF
    reader.feed(b"B")
    assert drain(reader) == [TOO_LONG]
    reader.feed(b"B" * 500)
    assert drain(reader) == []  # once per line
    reader.feed(b"\r\nNOOP\r\n")
    assert drain(reader) == ["NOOP"]


def test_too_long_line_in_a_single_feed_is_not_buffered():
    reader = LineReader(max_line=100)
    reader.feed(b"B" * 1000)
    assert len(reader._buf) <= 100 + 1
    assert drain(reader) == [TOO_LONG]
    reader.feed(b"\n")
    assert drain(reader) == []


def test_a_line_that_never_ends_is_endless_past_the_bound():
    reader = LineReader(max_line=100)
    bound = endless_bound(100)
    reader.feed(b"NOOP\r\n" + b"C" * bound)
    assert drain(reader) == ["NOOP", TOO_LONG]
    reader.feed(b"C")
    assert drain(reader) == [ENDLESS]
    # Nothing after it counts: the connection is to be closed.
    reader.feed(b"C" * 1000 + b"\r\nNOOP\r\n")
    assert drain(reader) == []
    assert len(reader._buf) <= 100 + 1


def test_a_ten_megabyte_line_in_one_feed_is_endless():
    reader = LineReader()
    reader.feed(b"D" * (10 * 1024 * 1024))
    assert drain(reader) == [TOO_LONG, ENDLESS]


def test_lines_before_an_endless_one_are_kept_in_order():
    reader = LineReader(max_line=10)
    reader.feed(b"USER a\r\nPASS b\r\n" + b"x" * (endless_bound(10) + 1))
    assert drain(reader) == ["USER a", "PASS b", TOO_LONG, ENDLESS]


def test_the_endless_bound_is_a_mebibyte_or_sixteen_times_the_cap():
    assert endless_bound(MAX_LINE) == 1024 * 1024
    assert endless_bound(65536) == 16 * 65536


def test_marker_reprs():
    assert repr(TOO_LONG) == "TOO_LONG"
    assert repr(ENDLESS) == "ENDLESS"


# --- decoding -------------------------------------------------------------------------


def test_utf8_is_decoded():
    assert feed_all("RETR café €.txt\r\n".encode()) == ["RETR café €.txt"]


def test_non_utf8_bytes_survive_as_surrogates():
    [line] = feed_all(b"RETR caf\xe9\x80.txt\r\n")
    assert line == "RETR caf\udce9\udc80.txt"
    assert line.encode("utf-8", "surrogateescape") == b"RETR caf\xe9\x80.txt"


def test_utf8_character_split_across_feeds():
    data = "STOR ünï€😀\r\n".encode()
    assert feed_all(data, step=1) == ["STOR ünï€😀"]


# --- EOF ------------------------------------------------------------------------------


def test_eof_on_a_fresh_reader():
    reader = LineReader()
    assert not reader.at_eof
    reader.feed(b"")
    assert reader.at_eof
    assert reader.next_line() is None


def test_eof_after_complete_lines_waits_until_they_are_taken():
    reader = LineReader()
    reader.feed(b"NOOP\r\nQUIT\r\n")
    reader.feed(b"")
    assert not reader.at_eof
    assert reader.next_line() == "NOOP"
    assert not reader.at_eof
    assert reader.next_line() == "QUIT"
    assert reader.at_eof


def test_partial_line_at_eof_is_dropped():
    reader = LineReader()
    reader.feed(b"NOOP\r\nQU")
    reader.feed(b"")
    assert reader.next_line() == "NOOP"
    assert reader.next_line() is None
    assert reader.at_eof


# --- properties -----------------------------------------------------------------------

SMALL_CAP = 64

line_text = st.text(
    alphabet=st.characters(exclude_characters="\r\n", codec="utf-8"), max_size=40
).filter(lambda t: len(t.encode()) <= SMALL_CAP)


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(line_text, max_size=12), data=st.data())
def test_any_lines_split_anywhere_come_back_exactly(lines, data):
    wire = "".join(line + "\r\n" for line in lines).encode()
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    assert feed_all_chunks(split_at(wire, cuts)) == lines
    # A reader with a cap fits these lines too.
    reader = LineReader(SMALL_CAP)
    for chunk in split_at(wire, cuts):
        reader.feed(chunk)
    assert drain(reader) == lines


raw_line = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\xff", b""))


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(raw_line, max_size=10), lf_only=st.booleans(), data=st.data())
def test_any_raw_lines_round_trip_through_surrogateescape(lines, lf_only, data):
    # A line that itself ends in CR loses that CR with a bare-LF ending: skip those.
    if lf_only:
        lines = [ln for ln in lines if not ln.endswith(b"\r")]
    end = b"\n" if lf_only else b"\r\n"
    wire = b"".join(line + end for line in lines)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    got = feed_all_chunks(split_at(wire, cuts))
    assert [g.encode("utf-8", "surrogateescape") for g in got] == lines  # type: ignore[union-attr]


telnet_noise = st.one_of(
    st.sampled_from([bytes([IAC, c]) for c in (IP, DM, NOP, AYT)]),
    st.builds(
        lambda verb, opt: bytes([IAC, verb, opt]),
        st.sampled_from([WILL, WONT, DO, DONT]),
        st.integers(0, 255),
    ),
)


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(line_text, min_size=1, max_size=6), data=st.data())
def test_telnet_noise_anywhere_is_invisible(lines, data):
    wire = bytearray("".join(line + "\r\n" for line in lines).encode())
    inserts = data.draw(st.lists(st.tuples(st.integers(0, len(wire)), telnet_noise), max_size=6))
    for pos, noise in sorted(inserts, key=lambda t: t[0], reverse=True):
        wire[pos:pos] = noise
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=8))
    assert feed_all_chunks(split_at(bytes(wire), cuts)) == lines


@settings(max_examples=100, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=300), max_size=20),
    cap=st.integers(1, 100),
)
def test_buffer_never_exceeds_the_cap(chunks, cap):
    reader = LineReader(cap)
    out: list[object] = []
    for chunk in chunks:
        if chunk:
            reader.feed(chunk)
        assert len(reader._buf) <= cap + 1
        for line in drain(reader):
            out.append(line)
            if line is not TOO_LONG and line is not ENDLESS:
                assert len(line.encode("utf-8", "surrogateescape")) <= cap  # type: ignore[union-attr]
    # ENDLESS comes at most once, and nothing after it.
    assert ENDLESS not in out[:-1]


@settings(max_examples=100, deadline=None)
@given(lengths=st.lists(st.integers(0, 40), max_size=8), data=st.data())
def test_one_too_long_marker_per_long_line_wherever_it_is_cut(lengths, data):
    cap = 10
    wire = b"".join(b"x" * n + b"\r\n" for n in lengths)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=10))
    expected = [TOO_LONG if n > cap else "x" * n for n in lengths]
    assert feed_all_chunks(split_at(wire, cuts), cap) == expected
