"""AVBL in the sans-I/O core: a login-only command whose path is resolved like any other."""

from __future__ import annotations

from fileferry.protocol import NEED_DATA, Reply, Session, events


def feed(s: Session, line: str) -> events.Event:
    s.receive_data(line.encode() + b"\r\n")
    return s.next_event()


def test_avbl_needs_login_then_names_a_resolved_path() -> None:
    s = Session()
    refused = feed(s, "AVBL")
    assert isinstance(refused, events.Answer) and refused.reply.code == 530
    feed(s, "USER alice")
    auth = feed(s, "PASS pw")
    s.send(Reply(230, "ok"), auth)
    cwd = feed(s, "CWD /in")
    s.send(Reply(250, "ok"), cwd)
    ev = feed(s, "AVBL")
    assert ev == events.AvailableSpace("/in")
    s.send(Reply(213, "100"), ev)
    ev = feed(s, "AVBL ../out/./x")
    assert ev == events.AvailableSpace("/out/x")
    s.send(Reply(550, "no"), ev)
    bad = feed(s, "AVBL a\\b")
    assert isinstance(bad, events.Answer) and bad.reply.code == 550
    assert s.next_event() is NEED_DATA
