"""HASH, OPTS HASH, RANG and X* in the sans-I/O core: replies, events, FEAT."""

from __future__ import annotations

import pytest

from fileferry.protocol import events
from fileferry.protocol.replies import Reply
from fileferry.protocol.session import Session


def _logged_in() -> Session:
    s = Session()
    s.receive_data(b"USER alice\r\nPASS secret\r\n")
    assert s.next_event() == events.Answer(Reply(331, "Please specify the password."))
    auth = s.next_event()
    assert isinstance(auth, events.Authenticate)
    s.send(Reply(230, "ok"), auth)
    return s


def _next(s: Session, line: str) -> events.Event:
    s.receive_data(line.encode("utf-8", "surrogateescape") + b"\r\n")
    event = s.next_event()
    if isinstance(event, events.Answer):
        s.send(event.reply, event)
    return event


def _reply(s: Session, line: str) -> Reply:
    event = _next(s, line)
    assert isinstance(event, events.Answer), event
    return event.reply


def _feat_hash_line(s: Session) -> str:
    lines = _reply(s, "FEAT").lines
    (line,) = [x for x in lines if x.startswith("HASH ")]
    return line


def test_opts_hash_reports_and_changes_the_algorithm():
    s = Session()
    assert _reply(s, "OPTS HASH") == Reply(200, "SHA-256")
    assert _feat_hash_line(s) == "HASH SHA-256*;SHA-512;SHA-1;MD5;CRC32"
    assert _reply(s, "OPTS HASH md5") == Reply(200, "MD5")
    assert _reply(s, "OPTS HASH") == Reply(200, "MD5")
    assert _feat_hash_line(s) == "HASH SHA-256;SHA-512;SHA-1;MD5*;CRC32"
    unknown = _reply(s, "OPTS HASH CRC-37")
    assert unknown.code == 501
    assert _reply(s, "OPTS HASH") == Reply(200, "MD5")


def test_feat_lists_the_legacy_digest_commands():
    lines = _reply(Session(), "FEAT").lines
    for verb in ("XCRC", "XMD5", "XSHA1", "XSHA256", "XSHA512"):
        assert verb in lines
    assert not any(line.startswith("RANG") for line in lines)  # not for RETR/STOR


def test_hash_needs_login():
    assert _reply(Session(), "HASH f").code == 530
    assert _reply(Session(), "XSHA256 f").code == 530


def test_hash_event_uses_selected_algorithm_and_cwd():
    s = _logged_in()
    cwd = _next(s, "CWD docs")
    s.send(Reply(250, "ok"), cwd)
    assert _reply(s, "OPTS HASH SHA-1").code == 200
    assert _next(s, "HASH a file.txt") == events.FileHash("/docs/a file.txt", "SHA-1", "HASH")


def test_hash_with_rang_is_inclusive_and_used_once():
    s = _logged_in()
    assert _reply(s, "RANG 10 19").code == 350
    ev = _next(s, "HASH f")
    assert ev == events.FileHash("/f", "SHA-256", "HASH", 10, 20)
    s.send(Reply(213, "done"), ev)
    assert s.state.hash_range is None
    assert _next(s, "HASH f") == events.FileHash("/f", "SHA-256", "HASH")


@pytest.mark.parametrize(
    ("arg", "code"),
    [("1 0", 350), ("5 4", 501), ("x 4", 501), ("1", 501), ("1 2 3", 501), ("-1 5", 501)],
)
def test_rang_syntax_and_reset(arg, code):
    s = _logged_in()
    assert _reply(s, "RANG 0 9").code == 350
    assert _reply(s, f"RANG {arg}").code == code
    assert s.state.hash_range is None


def test_transfer_after_rang_is_refused_not_sent_whole():
    s = _logged_in()
    assert _reply(s, "RANG 0 9").code == 350
    assert _reply(s, "RETR f").code == 504
    assert s.state.hash_range is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("XCRC f", events.FileHash("/f", "CRC32", "XCRC")),
        ("XMD5 f", events.FileHash("/f", "MD5", "XMD5")),
        ("XSHA1 f", events.FileHash("/f", "SHA-1", "XSHA1")),
        ("XSHA256 d/f 0 5", events.FileHash("/d/f", "SHA-256", "XSHA256", 0, 5)),
        ("XSHA512 f", events.FileHash("/f", "SHA-512", "XSHA512")),
        ('XCRC "a b 1 2"', events.FileHash("/a b 1 2", "CRC32", "XCRC")),
        ('XCRC "a b" 3 7', events.FileHash("/a b", "CRC32", "XCRC", 3, 7)),
        ("XCRC a b 3 7", events.FileHash("/a b", "CRC32", "XCRC", 3, 7)),
        ("XCRC a b 3", events.FileHash("/a b 3", "CRC32", "XCRC")),
    ],
)
def test_legacy_arguments(line, expected):
    assert _next(_logged_in(), line) == expected


@pytest.mark.parametrize("line", ['XCRC "open', 'XCRC "f" 1', 'XCRC "f" 7 3', 'XMD5 ""'])
def test_legacy_malformed_arguments_are_501(line):
    assert _reply(_logged_in(), line).code == 501


def test_rein_resets_the_algorithm():
    s = _logged_in()
    assert _reply(s, "OPTS HASH SHA-1") == Reply(200, "SHA-1")
    ev = _next(s, "REIN")
    s.send(Reply(220, "again"), ev)
    assert _reply(s, "OPTS HASH") == Reply(200, "SHA-256")
