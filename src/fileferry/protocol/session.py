"""The sans-I/O FTP session: bytes in, events and bytes out.

Usage by an I/O shell::

    session = Session()
    write(session.send(Reply(220, "ready")))
    session.receive_data(chunk)            # b"" when the peer closed
    while (event := session.next_event()) is not NEED_DATA:
        ...                                # act, then for each reply:
        write(session.send(reply, event))

State commits on the reply that is sent, not on the request: a 230 logs the
user in, a 250 to CWD moves the working directory, a 150 starts a transfer
and its 226/4xx/5xx ends it. The server therefore cannot get the core and
the client out of step by forgetting to update something.

While an event is outstanding, later lines wait (pipelining is kept in
order). While a transfer runs, ABOR, STAT and QUIT are acted on at once and
other commands are held until it ends.
"""

from __future__ import annotations

from collections.abc import Callable

from fileferry.protocol import events
from fileferry.protocol.commands import COMMANDS, Arg, CoreConfig, Ctx
from fileferry.protocol.lines import ENDLESS, TOO_LONG, LineReader
from fileferry.protocol.replies import Reply
from fileferry.protocol.state import Access, Action, DataMode, Phase, SessionState, action

#: Commands held back while a transfer runs, at most; more are refused.
MAX_HELD = 16

#: A command line past the reader's ENDLESS bound: the server closes after it.
_ENDLESS_REPLY = Reply(421, "Command line without an end; closing control connection.")

_REFUSALS = {
    Action.NOT_LOGGED_IN: Reply(530, "Please log in with USER and PASS first."),
    Action.BAD_SEQUENCE: Reply(503, "Bad sequence of commands."),
    Action.ALREADY_LOGGED_IN: Reply(503, "Already logged in."),
}


class ProtocolError(RuntimeError):
    """The I/O shell used the core wrongly (a bug in fileferry, not the client)."""


class Session:
    """One FTP control connection's protocol state."""

    def __init__(self, config: CoreConfig | None = None, *, implicit_tls: bool = False) -> None:
        """``implicit_tls``: the connection was TLS from its first byte (FTPS port 990
        style); control and, by default, data are protected."""
        self.config = config or CoreConfig()
        self.state = SessionState(
            tls_control=implicit_tls, pbsz=implicit_tls, prot_private=implicit_tls
        )
        self._ctx = Ctx(self.state, self.config)
        self._reader = LineReader(self.config.max_line)
        # A list, not a deque: at most MAX_HELD short lines, and an empty deque
        # costs ~0.7 KiB of every session (its first block), an empty list 56 bytes.
        self._held: list[str] = []
        #: Events sent to the server and not yet given a final reply.
        self._outstanding: list[events.Event] = []
        self._closed = False
        self._eof_reported = False
        #: The verb of the command line taken last (``""``: not a known
        #: command), for observers that count commands by verb.
        self.verb = ""

    # --- input ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the control connection; ``b""`` means the peer closed."""
        self._reader.feed(data)

    @property
    def phase(self) -> Phase:
        """Derived, never stored, so it cannot drift from the facts it sums up."""
        if self._closed:
            return Phase.CLOSED
        outstanding = self._outstanding
        if outstanding:  # asked once or twice per command: no generator when idle
            for e in outstanding:
                if isinstance(e, events.Transfer):
                    return Phase.TRANSFERRING
            return Phase.WAITING
        if self.state.logged_in:
            return Phase.READY
        if self.state.pending_user is not None:
            return Phase.NEED_PASS
        return Phase.NEED_USER

    @property
    def transfer_outstanding(self) -> events.Transfer | None:
        for e in self._outstanding:
            if isinstance(e, events.Transfer):
                return e
        return None

    def next_event(self) -> events.Event:
        """The next thing for the server to do, or ``NEED_DATA``."""
        while True:
            phase = self.phase
            if phase in (Phase.CLOSED, Phase.WAITING):
                return events.NEED_DATA
            if phase is Phase.TRANSFERRING:
                return self._next_during_transfer()
            line = self._held.pop(0) if self._held else self._reader.next_line()
            if line is None:
                return self._eof_or_need_data()
            if line is TOO_LONG:
                self.verb = ""
                return events.Answer(Reply(500, "Command line too long."))
            if line is ENDLESS:
                self.verb = ""
                return events.Answer(_ENDLESS_REPLY)
            assert isinstance(line, str)
            result = self._run(line)
            if result is not None:
                return result

    def _eof_or_need_data(self) -> events.Event:
        if self._reader.at_eof and not self._eof_reported:
            self._eof_reported = True
            return events.ConnectionClosed()
        return events.NEED_DATA

    def _next_during_transfer(self) -> events.Event:
        while True:
            line = self._reader.next_line()
            if line is None:
                return self._eof_or_need_data()
            if line is TOO_LONG:
                return events.Answer(Reply(500, "Command line too long."))
            if line is ENDLESS:
                return events.Answer(_ENDLESS_REPLY)
            assert isinstance(line, str)
            cmd = COMMANDS.get(_verb(line)[0])
            if cmd is not None and action(Phase.TRANSFERRING, cmd.access) is Action.RUN:
                result = self._run(line)
                if result is not None:
                    return result
                continue
            if len(self._held) >= MAX_HELD:
                return events.Answer(Reply(421, "Too many commands during a transfer."))
            self._held.append(line)

    def _run(self, line: str) -> events.Event | None:
        """Dispatch one line; ``None`` if it needs no answer at all."""
        verb, arg = _verb(line)
        cmd = COMMANDS.get(verb)
        self.verb = verb if cmd is not None else ""
        if not verb:
            return events.Answer(Reply(500, "Empty command."))
        if cmd is None:
            # Echo the verb only when it is plain ASCII: raw bytes in a reply
            # would break clients that decode the control channel strictly.
            shown = f" {verb[:16]}" if verb.isascii() and verb.isalnum() else ""
            return events.Answer(Reply(500, f"Unknown command{shown}."))
        decision = action(self.phase, cmd.access)
        if decision is Action.IGNORE:
            return None
        refusal = _REFUSALS.get(decision)
        if refusal is not None:
            return events.Answer(refusal)
        if decision is Action.HOLD:  # pragma: no cover - phases that hold never get here
            self._held.insert(0, line)
            return events.NEED_DATA
        if cmd.arg is Arg.REQUIRED and not arg.strip():
            return events.Answer(Reply(501, f"Syntax: {cmd.syntax}"))
        if cmd.arg is Arg.NONE and arg.strip():
            return events.Answer(Reply(501, f"{verb} takes no argument."))
        if verb != "RNTO" and cmd.access is not Access.FREE:
            self.state.rename_from = None
        outcome = cmd.handler(self._ctx, arg)
        if isinstance(outcome, Reply):
            return events.Answer(outcome)
        if not isinstance(outcome, events.Answer):
            self._outstanding.append(outcome)
        return outcome

    # --- output -----------------------------------------------------------------

    def send(self, reply: Reply, event: events.Event | None = None) -> bytes:
        """Encode ``reply``; if it answers ``event``, commit what it means.

        A preliminary reply (1xx) to a transfer marks it started; any other
        reply to an outstanding event completes it.
        """
        if event is not None and not isinstance(event, events.Answer):
            index = next((i for i, e in enumerate(self._outstanding) if e is event), None)
            if index is None:
                raise ProtocolError(f"{event!r} is not outstanding")
            if reply.is_preliminary:
                if isinstance(event, events.Transfer):
                    self.state.transfer_started = True
            else:
                del self._outstanding[index]
                _COMMIT.get(type(event), _no_commit)(self, event, reply)
        return reply.encode()

    def close(self) -> None:
        """Mark the session finished (after QUIT, a timeout, or a 421)."""
        self._closed = True

    # --- commits (one per event type that changes state) -------------------------

    def _commit_auth(self, event: events.Event, reply: Reply) -> None:
        assert isinstance(event, events.Authenticate)
        if reply.code == 230:
            self.state.logged_in = True
            self.state.username = event.username
            self.state.cwd = "/"
        else:
            self.state.reset_login()

    def _commit_cwd(self, event: events.Event, reply: Reply) -> None:
        assert isinstance(event, events.ChangeDirectory)
        if 200 <= reply.code < 300:
            self.state.cwd = event.path

    def _commit_rnfr(self, event: events.Event, reply: Reply) -> None:
        assert isinstance(event, events.RenameFrom)
        self.state.rename_from = event.path if reply.code == 350 else None

    def _commit_rnto(self, event: events.Event, reply: Reply) -> None:
        self.state.rename_from = None

    def _commit_passive(self, event: events.Event, reply: Reply) -> None:
        ok = reply.code in (227, 229)
        self.state.data_mode = DataMode.PASSIVE if ok else DataMode.NONE

    def _commit_active(self, event: events.Event, reply: Reply) -> None:
        self.state.data_mode = DataMode.ACTIVE if reply.code == 200 else DataMode.NONE

    def _commit_transfer(self, event: events.Event, reply: Reply) -> None:
        # Whatever the outcome, the data channel set up for it is used up.
        self.state.data_mode = DataMode.NONE
        self.state.transfer_started = False

    def _commit_abort(self, event: events.Event, reply: Reply) -> None:
        self.state.data_mode = DataMode.NONE

    def _commit_rein(self, event: events.Event, reply: Reply) -> None:
        if reply.code == 220:
            self.state.reset_login()

    def _commit_quit(self, event: events.Event, reply: Reply) -> None:
        self._closed = True

    def _commit_tls(self, event: events.Event, reply: Reply) -> None:
        if reply.code == 234:
            # Anything after the AUTH line arrived in clear text: never act on it.
            self._reader = LineReader(self.config.max_line)
            self._held.clear()
            self.state.tls_control = True


def _no_commit(session: Session, event: events.Event, reply: Reply) -> None:
    """Events whose replies change no session state."""


_Commit = Callable[[Session, events.Event, Reply], None]
_COMMIT: dict[type[events.Event], _Commit] = {
    events.Authenticate: Session._commit_auth,
    events.ChangeDirectory: Session._commit_cwd,
    events.RenameFrom: Session._commit_rnfr,
    events.RenameTo: Session._commit_rnto,
    events.EnterPassive: Session._commit_passive,
    events.EnterActive: Session._commit_active,
    events.ListDirectory: Session._commit_transfer,
    events.RetrieveFile: Session._commit_transfer,
    events.StoreFile: Session._commit_transfer,
    events.Abort: Session._commit_abort,
    events.Reinitialize: Session._commit_rein,
    events.Quit: Session._commit_quit,
    events.StartTLS: Session._commit_tls,
}


def _verb(line: str) -> tuple[str, str]:
    """Split ``VERB arg``; the argument keeps its spaces (names may have them)."""
    verb, _, arg = line.lstrip(" ").partition(" ")
    return verb.upper(), arg
