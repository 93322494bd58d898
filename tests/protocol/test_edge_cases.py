"""Edge cases found while reviewing the core: each pins one fixed behaviour."""

from __future__ import annotations

from fileferry.protocol import events
from fileferry.protocol.lines import LineReader
from fileferry.protocol.replies import Reply

from .dialogue import code, login, passive, run


def test_stray_iac_before_line_end_does_not_join_lines() -> None:
    reader = LineReader()
    reader.feed(b"NOOP\xff\nSYST\r\n")
    assert reader.next_line() == "NOOP"
    assert reader.next_line() == "SYST"


def test_stat_with_only_spaces_is_server_status() -> None:
    session = login()
    assert run(session, "STAT   ") == events.Status(None)


def test_list_flags_with_digits_are_stripped() -> None:
    session = passive(login())
    event = run(session, "NLST -1")
    assert isinstance(event, events.ListDirectory)
    assert event.path == "/" and not event.arg_given


def test_refused_rnto_ends_the_rename() -> None:
    session = login()
    rnfr = run(session, "RNFR a.txt")
    assert isinstance(rnfr, events.RenameFrom)
    session.send(Reply(350, "Ready."), rnfr)
    assert code(session, "RNTO bad\x7fname") == 553
    assert code(session, "RNTO good") == 503


def test_port_refuses_non_ascii_digits() -> None:
    session = login()
    assert code(session, "PORT \u0661,2,3,4,5,6") == 501
