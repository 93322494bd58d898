"""The client's reply parser: RFC 959 4.2 framing, caps, and what the server's encoder sends."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fileferry.protocol import events
from fileferry.protocol.features import Features
from fileferry.protocol.replies import Reply, quote_path, unquote_path
from fileferry.protocol.replyparser import (
    MAX_LINE,
    MAX_REPLY,
    ReplyError,
    ReplyParser,
    parse_replies,
)
from fileferry.protocol.session import Session

# --- framing: examples ------------------------------------------------------------------


def test_single_line():
    assert parse_replies(b"200 NOOP ok.\r\n") == [Reply(200, "NOOP ok.")]


def test_bare_code_and_code_with_space():
    assert parse_replies(b"226\r\n226 \r\n") == [Reply(226, ""), Reply(226, "")]


def test_lf_alone_ends_a_line_too():
    assert parse_replies(b"200 a\n250 b\r\n") == [Reply(200, "a"), Reply(250, "b")]


def test_multi_line():
    (reply,) = parse_replies(b"211-Features:\r\n EPRT\r\n UTF8\r\n211 End\r\n")
    assert (reply.code, reply.text, reply.lines, reply.footer) == (
        211,
        "Features:",
        ("EPRT", "UTF8"),
        "End",
    )
    assert reply.all_lines == ("Features:", "EPRT", "UTF8", "End")
    assert reply.last_line == "End"
    assert str(reply) == "211 End"


def test_multi_line_without_middle_lines_stays_multi_line():
    (reply,) = parse_replies(b"213-working\r\n213 SHA-256 0-1 ab x\r\n")
    assert reply.is_multiline
    assert reply.lines == ()
    assert reply.last_line == "SHA-256 0-1 ab x"
    assert reply.all_lines == ("working", "SHA-256 0-1 ab x")
    # And it goes back out as the two lines it came as.
    assert reply.encode() == b"213-working\r\n213 SHA-256 0-1 ab x\r\n"


def test_lines_that_look_like_replies_do_not_end_a_multi_line_reply():
    wire = (
        b"250-Listing\r\n"
        b"226 Transfer complete\r\n"  # another code: text
        b"250-more\r\n"  # same code, but a dash: text
        b"2500 x\r\n"  # four digits: text
        b" 250 indented\r\n"
        b"250 End\r\n"
    )
    (reply,) = parse_replies(wire)
    assert reply.lines == ("226 Transfer complete", "250-more", "2500 x", "250 indented")
    assert reply.footer == "End"


def test_bare_code_ends_a_multi_line_reply():
    (reply,) = parse_replies(b"211-x\r\n y\r\n211\r\n")
    assert (reply.lines, reply.footer) == (("y",), "")


def test_several_replies_in_one_read_come_out_in_order():
    parser = ReplyParser()
    parser.feed(b"150 go\r\n226-done\r\n stats\r\n226 ok\r\n221 bye\r\n")
    assert parser.next_reply() == Reply(150, "go")
    assert parser.next_reply() == Reply(226, "done", ("stats",), "ok", multiline=True)
    assert parser.next_reply() == Reply(221, "bye")
    assert parser.next_reply() is None
    assert parser.idle


def test_a_reply_in_pieces_waits_for_its_end():
    parser = ReplyParser()
    for piece in (b"21", b"1-a\r", b"\n b\r\n", b"211 E", b"nd\r"):
        parser.feed(piece)
        assert parser.next_reply() is None
        assert not parser.idle
    parser.feed(b"\n")
    assert parser.next_reply() == Reply(211, "a", ("b",), "End", multiline=True)


def test_bytes_that_are_not_utf8_survive_as_surrogates():
    (reply,) = parse_replies(b'257 "/caf\xe9" is here\r\n')
    assert reply.text == '"/caf\udce9" is here'
    assert reply.encode() == b'257 "/caf\xe9" is here\r\n'


# --- framing: refusals ------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        b"hello\r\n",
        b"\r\n",
        b"20\r\n",
        b"2000 x\r\n",
        b"200x\r\n",
        b"099 x\r\n",
        b"660 x\r\n",
        b"999 x\r\n",
        b" 200 x\r\n",
        "\u0662\u0660\u0660 arabic digits\r\n".encode(),
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 400 Bad Request\r\n",
    ],
)
def test_what_is_not_a_reply_is_an_error(wire):
    with pytest.raises(ReplyError, match="not an FTP reply"):
        parse_replies(wire)


def test_a_line_over_the_cap_is_refused_whole_or_in_pieces():
    with pytest.raises(ReplyError, match="longer than"):
        parse_replies(b"200 " + b"x" * MAX_LINE + b"\r\n")
    parser = ReplyParser()
    parser.feed(b"200 " + b"x" * (MAX_LINE - 10))
    with pytest.raises(ReplyError, match="longer than"):
        parser.feed(b"x" * 20)  # no line end yet: refused before it is buffered


def test_a_line_at_the_cap_is_fine():
    line = b"200 " + b"x" * (MAX_LINE - 4)
    assert parse_replies(line + b"\r\n") == [Reply(200, "x" * (MAX_LINE - 4))]


def test_an_endless_multi_line_reply_is_capped():
    parser = ReplyParser()
    parser.feed(b"211-start\r\n")
    with pytest.raises(ReplyError, match="reply longer than"):
        for _ in range(MAX_REPLY // 64 + 1):
            parser.feed(b" " + b"y" * 61 + b"\r\n")


def test_a_flood_of_empty_lines_is_capped_too():
    parser = ReplyParser(max_reply=1000)
    parser.feed(b"211-start\r\n")
    with pytest.raises(ReplyError, match="reply longer than"):
        parser.feed(b"\r\n" * 600)


# --- 257 paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('"/" is the current directory', "/"),
        ('"/a b" created', "/a b"),
        ('"/say ""hi""" is "cwd"', '/say "hi"'),
        ('MKD ok: "/x"', "/x"),
        ('""', ""),
    ],
)
def test_unquote_path(text, path):
    assert unquote_path(text) == path


@pytest.mark.parametrize("text", ["no quotes", '"unterminated', '"/a""'])
def test_unquote_path_refuses(text):
    with pytest.raises(ValueError):
        unquote_path(text)


@settings(max_examples=200, deadline=None)
@given(path=st.text(), after=st.text().filter(lambda a: not a.startswith('"')))
def test_unquote_reads_back_what_quote_wrote(path, after):
    # (A quote right after the closing one would make it a doubled quote.)
    assert unquote_path(quote_path(path) + after) == path


# --- properties ---------------------------------------------------------------------------

# What a reply can carry: any text but line ends (encode() turns those into spaces).
line_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"),
    max_size=40,
)
replies = st.builds(
    Reply,
    code=st.integers(100, 659),
    text=line_text,
    lines=st.lists(line_text, max_size=5).map(tuple),
    footer=line_text,
    multiline=st.booleans(),
)


def _same(received: Reply, sent: Reply) -> None:
    assert received.code == sent.code
    assert received.is_multiline == sent.is_multiline
    assert received.all_lines == sent.all_lines


@settings(max_examples=300, deadline=None)
@given(reply=replies)
def test_what_the_server_encodes_the_client_reads_back(reply):
    (received,) = parse_replies(reply.encode())
    _same(received, reply)
    assert received.encode() == reply.encode()


@settings(max_examples=150, deadline=None)
@given(sent=st.lists(replies, min_size=1, max_size=6), cuts=st.lists(st.integers(0, 2000)))
def test_how_the_bytes_are_cut_does_not_matter(sent, cuts):
    wire = b"".join(r.encode() for r in sent)
    parser = ReplyParser()
    start = 0
    for cut in [*sorted({c % (len(wire) + 1) for c in cuts}), len(wire)]:
        parser.feed(wire[start:cut])
        start = cut
    received = []
    while (reply := parser.next_reply()) is not None:
        received.append(reply)
    assert len(received) == len(sent)
    for got, want in zip(received, sent, strict=True):
        _same(got, want)
    assert parser.idle


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_reply_error(data):
    parser = ReplyParser(max_line=64, max_reply=256)
    try:
        parser.feed(data)
    except ReplyError:
        return
    while (reply := parser.next_reply()) is not None:
        assert 100 <= reply.code <= 659
        assert all(len(line) <= 64 for line in reply.all_lines)


# --- the two ends together ---------------------------------------------------------------


def _answer(session: Session, line: str) -> Reply:
    session.receive_data(line.encode() + b"\r\n")
    event = session.next_event()
    assert isinstance(event, events.Answer), event
    session.send(event.reply, event)
    return event.reply


def test_the_servers_feat_reads_as_features():
    session = Session()
    sent = _answer(session, "FEAT")
    (received,) = parse_replies(sent.encode())
    features = Features.from_reply(received)
    assert features.lines == tuple(line.strip() for line in sent.lines)
    assert features.has("EPRT") and features.has("eprt")
    assert features.has("XSHA256")
    assert features.argument("HASH") == "SHA-256*;SHA-512;SHA-1;MD5;CRC32"
    assert features.argument("UTF8") == ""
    assert features.argument("NOPE") is None
    assert not features.has("NOPE")


@pytest.mark.parametrize(
    "reply",
    [Reply(500, "FEAT not understood"), Reply(502, "no"), Reply(211, "No features")],
)
def test_no_feat_means_no_features(reply):
    assert Features.from_reply(reply) == Features()
