"""Driving a ``Session`` the way the server does, for the protocol tests."""

from __future__ import annotations

from fileferry.protocol import events
from fileferry.protocol.commands import CoreConfig
from fileferry.protocol.replies import Reply
from fileferry.protocol.session import Session


def wire(*lines: str | bytes) -> bytes:
    """Command lines as the client sends them (``str`` gets CRLF; ``bytes`` goes as is)."""
    out = b""
    for line in lines:
        if isinstance(line, str):
            out += line.encode("utf-8", "surrogateescape") + b"\r\n"
        else:
            out += line
    return out


def feed(session: Session, *lines: str | bytes) -> None:
    """Send all ``lines`` in one read, as a pipelining client would."""
    session.receive_data(wire(*lines))


def run(session: Session, line: str | bytes) -> events.Event:
    """Send one line and return the next event the core produces."""
    feed(session, line)
    return session.next_event()


def ask(session: Session, line: str | bytes) -> Reply:
    """Send one line that the core must answer by itself; return (and send) its reply."""
    event = run(session, line)
    assert isinstance(event, events.Answer), event
    session.send(event.reply, event)
    return event.reply


def code(session: Session, line: str | bytes) -> int:
    return ask(session, line).code


def login(session: Session | None = None, user: str = "alice") -> Session:
    session = session or Session()
    assert code(session, f"USER {user}") == 331
    auth = run(session, "PASS secret")
    assert isinstance(auth, events.Authenticate)
    session.send(Reply(230, "Logged in."), auth)
    assert session.state.logged_in
    return session


def passive(session: Session) -> Session:
    event = run(session, "PASV")
    assert event == events.EnterPassive(extended=False)
    session.send(Reply(227, "Entering Passive Mode (127,0,0,1,4,1)."), event)
    return session


def start(session: Session, line: str) -> events.Transfer:
    """Open a passive data channel, send ``line`` and return its transfer event."""
    passive(session)
    event = run(session, line)
    assert isinstance(event, events.Transfer), event
    return event


def fresh(max_line: int | None = None, **kwargs: object) -> Session:
    if max_line is not None:
        kwargs["max_line"] = max_line
    return Session(CoreConfig(**kwargs))  # type: ignore[arg-type]
