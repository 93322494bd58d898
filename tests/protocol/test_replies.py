"""Reply wire format: single and multi-line, CR/LF neutralised, 257 quoting."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fileferry.protocol.replies import Reply, quote_path


def test_single_line():
    assert Reply(200, "NOOP ok.").encode() == b"200 NOOP ok.\r\n"


def test_single_line_without_text():
    assert Reply(226).encode() == b"226 \r\n"


def test_multi_line_default_footer():
    reply = Reply(211, "Features:", ("EPRT", "UTF8"))
    assert reply.encode() == b"211-Features:\r\n EPRT\r\n UTF8\r\n211 End\r\n"


def test_multi_line_custom_footer():
    reply = Reply(214, "Help:", ("USER PASS",), "Help OK.")
    assert reply.encode() == b"214-Help:\r\n USER PASS\r\n214 Help OK.\r\n"


def test_multi_line_text_that_looks_like_a_reply_is_indented():
    wire = Reply(211, "Status:", ("226 Transfer complete", "211 End")).encode()
    lines = wire.split(b"\r\n")[:-1]
    # Only the last line may start with the code and a space.
    assert [ln for ln in lines if re.match(rb"^\d{3} ", ln)] == [b"211 End"]
    assert lines[1] == b" 226 Transfer complete"


@pytest.mark.parametrize("evil", ["a\r\n226 fake", "a\n226 fake", "a\r226 fake", "\r\n\r\n"])
def test_cr_lf_in_text_cannot_inject_a_reply_line(evil):
    for reply in (
        Reply(550, evil),
        Reply(211, evil, (evil, evil), evil),
    ):
        wire = reply.encode()
        body = wire.replace(b"\r\n", b"")
        assert b"\r" not in body
        assert b"\n" not in body
        rows = len(reply.lines) + 2 if reply.lines else 1
        assert wire.count(b"\r\n") == rows


def test_cr_lf_become_spaces():
    assert Reply(550, "bad\r\nname").encode() == b"550 bad  name\r\n"


def test_surrogate_escaped_names_go_out_as_their_raw_bytes():
    assert Reply(550, "caf\udce9: not found").encode() == b"550 caf\xe9: not found\r\n"
    assert Reply(250, "x", ("caf\udce9",)).encode() == b"250-x\r\n caf\xe9\r\n250 End\r\n"


def test_utf8_text():
    assert Reply(257, '"/ünï" created').encode() == '257 "/ünï" created\r\n'.encode()


@pytest.mark.parametrize("code", [99, 0, -1, 660, 1000])
def test_code_out_of_range(code):
    with pytest.raises(ValueError):
        Reply(code, "x")


@pytest.mark.parametrize("code", [100, 599, 631, 659])
def test_code_in_range(code):
    assert Reply(code).code == code


def test_preliminary_and_positive():
    assert Reply(150).is_preliminary
    assert Reply(150).is_positive
    assert not Reply(226).is_preliminary
    assert Reply(226).is_positive
    assert Reply(350).is_positive
    assert not Reply(425).is_positive
    assert not Reply(550).is_positive


def test_replies_are_frozen_and_hashable():
    reply = Reply(200, "ok")
    with pytest.raises(AttributeError):
        reply.code = 500  # type: ignore[misc]
    assert hash(reply) == hash(Reply(200, "ok"))


# --- quote_path -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "quoted"),
    [
        ("/", '"/"'),
        ("/a b", '"/a b"'),
        ('/say "hi"', '"/say ""hi"""'),
        ('/"', '"/"""'),
    ],
)
def test_quote_path_doubles_quotes(path, quoted):
    assert quote_path(path) == quoted


@settings(max_examples=100, deadline=None)
@given(st.text())
def test_quote_path_round_trips(path):
    quoted = quote_path(path)
    assert quoted.startswith('"')
    assert quoted.endswith('"')
    inner = quoted[1:-1]
    # Every quote inside comes in pairs, so a client can find the closing one.
    assert re.fullmatch(r'(?:[^"]|"")*', inner, flags=re.S)
    assert inner.replace('""', '"') == path


# --- properties -----------------------------------------------------------------------

codes = st.integers(100, 659)
texts = st.text(max_size=30)


@settings(max_examples=150, deadline=None)
@given(code=codes, text=texts, lines=st.lists(texts, max_size=5), footer=texts)
def test_wire_shape(code, text, lines, footer):
    wire = Reply(code, text, tuple(lines), footer).encode()
    assert wire.endswith(b"\r\n")
    rows = wire[:-2].split(b"\r\n")
    # No stray CR or LF anywhere but in the line ends.
    for row in rows:
        assert b"\r" not in row
        assert b"\n" not in row
    prefix = str(code).encode()
    if not lines:
        assert len(rows) == 1
        assert rows[0].startswith(prefix + b" ")
    else:
        assert len(rows) == len(lines) + 2
        assert rows[0].startswith(prefix + b"-")
        assert all(row.startswith(b" ") for row in rows[1:-1])
        assert rows[-1].startswith(prefix + b" ")
