"""FEAT, HELP and SITE HELP are derived from the one command table."""

from __future__ import annotations

from fileferry.protocol import CoreConfig, Reply, Session, events
from fileferry.protocol.commands import (
    COMMANDS,
    DEFAULT_CAPABILITIES,
    SERVER_FEATURES,
    site_commands,
)


def _ask(session: Session, line: str) -> Reply:
    session.receive_data(line.encode() + b"\r\n")
    event = session.next_event()
    assert isinstance(event, events.Answer), event
    return event.reply


def _logged_in(config: CoreConfig) -> Session:
    s = Session(config)
    _ask(s, "USER u")
    s.receive_data(b"PASS p\r\n")
    auth = s.next_event()
    assert isinstance(auth, events.Authenticate)
    s.send(Reply(230, "ok"), auth)
    return s


def test_feat_lines_come_from_the_rows() -> None:
    lines = set(_ask(Session(), "FEAT").lines)
    from_rows = {c.feature for c in COMMANDS.values() if isinstance(c.feature, str)}
    assert from_rows - {"AVBL"} <= lines  # AVBL needs a server that answers it
    assert set(SERVER_FEATURES) <= lines


def test_feat_follows_the_capabilities() -> None:
    without_mtime = CoreConfig(capabilities=DEFAULT_CAPABILITIES - {"set_mtime"})
    assert "MFMT" not in _ask(Session(without_mtime), "FEAT").lines
    with_space = CoreConfig(capabilities=DEFAULT_CAPABILITIES | {"available_space"})
    lines = _ask(Session(with_space), "FEAT").lines
    assert "AVBL" in lines and "MFMT" in lines
    assert list(lines) == sorted(lines)


def test_help_gives_each_rows_syntax() -> None:
    for verb in ("RETR", "MFMT", "SITE"):
        assert _ask(Session(), f"HELP {verb}") == Reply(214, f"Syntax: {COMMANDS[verb].syntax}")


def test_site_rows_follow_capabilities_and_the_operator() -> None:
    everything = DEFAULT_CAPABILITIES
    assert [n for n, _ in site_commands(everything)] == ["QUOTA", "CHMOD"]
    assert [n for n, _ in site_commands(everything, frozenset({"EXEC"}))] == [
        "QUOTA",
        "CHMOD",
        "EXEC",
    ]
    assert [n for n, _ in site_commands(everything - {"set_mode"})] == ["QUOTA"]


def test_site_help_and_dispatch_use_the_derived_rows() -> None:
    config = CoreConfig(site_commands=site_commands(DEFAULT_CAPABILITIES - {"set_mode"}))
    s = _logged_in(config)
    reply = _ask(s, "SITE HELP")
    # Each row names its command once (it used to read "QUOTA: QUOTA: ...").
    assert reply.lines == (
        "HELP: show this list",
        "QUOTA: show your quota and what you use of it",
    )
    assert _ask(s, "SITE CHMOD 644 f") == Reply(501, "Unknown SITE command.")
