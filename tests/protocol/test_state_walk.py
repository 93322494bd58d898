"""The transition table, walked pair by pair and by random dialogues.

Two layers: the table itself (total, and saying what the design says), then
real sessions driven into every phase and fed every verb, then a random walk
that feeds arbitrary command lines and bytes, answers events the way a server
might, and checks that nothing raises, nothing is lost and the phase never
lies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fileferry import paths
from fileferry.protocol import NEED_DATA, CoreConfig, Reply, Session, events
from fileferry.protocol.commands import COMMANDS
from fileferry.protocol.lines import LineReader
from fileferry.protocol.session import MAX_HELD
from fileferry.protocol.state import TABLE, Access, Action, DataMode, Phase, action

from .dialogue import code, login, run, start

# --- the table ------------------------------------------------------------------------


def test_table_is_total_over_live_phases_and_every_access():
    expected = {(p, a) for p in Phase if p is not Phase.CLOSED for a in Access}
    assert set(TABLE) == expected
    assert all(isinstance(v, Action) for v in TABLE.values())


def test_closed_ignores_everything():
    for access in Access:
        assert action(Phase.CLOSED, access) is Action.IGNORE


@settings(max_examples=200, deadline=None)
@given(phase=st.sampled_from(Phase), access=st.sampled_from(Access))
def test_every_pair_follows_the_rules(phase, access):
    act = action(phase, access)
    assert isinstance(act, Action)
    if phase is Phase.CLOSED:
        assert act is Action.IGNORE
        return
    assert act is TABLE[(phase, access)]
    # Nothing needing a login runs without one.
    if phase in (Phase.NEED_USER, Phase.NEED_PASS) and access in (Access.LOGIN, Access.OUT_OF_BAND):
        assert act is Action.NOT_LOGGED_IN
    # An outstanding event holds every line: replies stay in order.
    if phase is Phase.WAITING:
        assert act is Action.HOLD
    # A transfer lets only ABOR, STAT and QUIT through, and holds the rest.
    if phase is Phase.TRANSFERRING:
        expected = Action.RUN if access in (Access.OUT_OF_BAND, Access.QUIT) else Action.HOLD
        assert act is expected
    # HOLD only happens while something is outstanding.
    if act is Action.HOLD:
        assert phase in (Phase.WAITING, Phase.TRANSFERRING)
    # PASS only runs right after USER; USER never runs once logged in.
    if access is Access.PASS and act is Action.RUN:
        assert phase is Phase.NEED_PASS
    if phase is Phase.READY:
        if access in (Access.USER, Access.PASS):
            assert act is Action.ALREADY_LOGGED_IN
        else:
            assert act is Action.RUN
    # What needs no login, and QUIT, always gets through when nothing is outstanding.
    if access in (Access.FREE, Access.QUIT) and phase not in (Phase.WAITING, Phase.TRANSFERRING):
        assert act is Action.RUN


# --- real sessions in every phase, fed every verb ---------------------------------------

SITE = CoreConfig(site_commands=(("CHMOD", "change mode"),))

#: An argument that makes each verb's handler do its real work when it runs.
GOOD_ARG = {
    "USER": "bob",
    "PASS": "pw",
    "ACCT": "acct",
    "SMNT": "/mnt",
    "OPTS": "UTF8 ON",
    "HELP": "RETR",
    "SITE": "CHMOD 755 f",
    "TYPE": "I",
    "MODE": "S",
    "STRU": "F",
    "ALLO": "10",
    "REST": "10",
    "CWD": "d",
    "XCWD": "d",
    "MKD": "d",
    "XMKD": "d",
    "RMD": "d",
    "XRMD": "d",
    "DELE": "f",
    "RNFR": "f",
    "RNTO": "g",
    "SIZE": "f",
    "MDTM": "f",
    "MFMT": "20240101000000 f",
    "STAT": "",
    "MLST": "f",
    "EPSV": "",
    "PORT": "127,0,0,1,4,1",
    "EPRT": "|1|127.0.0.1|1025|",
    "LIST": "",
    "NLST": "",
    "MLSD": "",
    "RETR": "f",
    "STOR": "f",
    "APPE": "f",
    "STOU": "",
    "AUTH": "TLS",
    "PBSZ": "0",
    "PROT": "P",
    "HASH": "f",
    "RANG": "0 9",
    "XCRC": "f",
    "XMD5": "f",
    "XSHA1": "f",
    "XSHA256": "f 0 10",
    "XSHA512": "f",
}

REFUSALS = {
    Action.NOT_LOGGED_IN: Reply(530, "Please log in with USER and PASS first."),
    Action.BAD_SEQUENCE: Reply(503, "Bad sequence of commands."),
    Action.ALREADY_LOGGED_IN: Reply(503, "Already logged in."),
}


@dataclass
class Placed:
    """A session driven into a phase, and how to finish what keeps it there."""

    session: Session
    release: Callable[[], None] = lambda: None


def _need_user() -> Placed:
    return Placed(Session(SITE))


def _need_pass() -> Placed:
    s = Session(SITE)
    code(s, "USER alice")
    return Placed(s)


def _waiting_for_login() -> Placed:
    s = Session(SITE)
    code(s, "USER alice")
    auth = run(s, "PASS pw")
    return Placed(s, lambda: s.send(Reply(230, "ok"), auth))


def _waiting_for_cwd() -> Placed:
    s = login(Session(SITE))
    cwd = run(s, "CWD x")
    return Placed(s, lambda: s.send(Reply(250, "ok"), cwd))


def _ready() -> Placed:
    return Placed(login(Session(SITE)))


def _transferring(started: bool) -> Callable[[], Placed]:
    def build() -> Placed:
        s = login(Session(SITE))
        retr = start(s, "RETR f")
        if started:
            s.send(Reply(150, "go"), retr)
        return Placed(s, lambda: s.send(Reply(226, "done"), retr))

    return build


def _closed() -> Placed:
    s = login(Session(SITE))
    quit_event = run(s, "QUIT")
    s.send(Reply(221, "bye"), quit_event)
    return Placed(s)


PLACES: dict[str, tuple[Phase, Callable[[], Placed]]] = {
    "need-user": (Phase.NEED_USER, _need_user),
    "need-pass": (Phase.NEED_PASS, _need_pass),
    "waiting-login": (Phase.WAITING, _waiting_for_login),
    "waiting-cwd": (Phase.WAITING, _waiting_for_cwd),
    "ready": (Phase.READY, _ready),
    "transfer-pending": (Phase.TRANSFERRING, _transferring(False)),
    "transfer-started": (Phase.TRANSFERRING, _transferring(True)),
    "closed": (Phase.CLOSED, _closed),
}


def _line(verb: str) -> str:
    arg = GOOD_ARG.get(verb, "")
    return f"{verb} {arg}" if arg else verb


@pytest.mark.parametrize("place", sorted(PLACES))
def test_every_phase_and_verb_does_what_the_table_says(place):
    phase, build = PLACES[place]
    for verb in sorted(COMMANDS):
        placed = build()
        s = placed.session
        assert s.phase is phase
        decision = action(phase, COMMANDS[verb].access)
        event = run(s, _line(verb))
        if decision in (Action.HOLD, Action.IGNORE):
            assert event is NEED_DATA, (place, verb)
            if decision is Action.HOLD:
                placed.release()
                assert s.next_event() is not NEED_DATA, (place, verb)  # released in turn
            continue
        if decision in REFUSALS:
            assert event == events.Answer(REFUSALS[decision]), (place, verb)
            continue
        assert decision is Action.RUN
        assert event is not NEED_DATA, (place, verb)
        if isinstance(event, events.Answer):
            assert event.reply not in REFUSALS.values(), (place, verb, event)
            assert event.reply.code != 530, (place, verb)


def test_good_args_cover_every_verb_that_needs_one():
    from fileferry.protocol.commands import Arg

    needing = {v for v, c in COMMANDS.items() if c.arg is Arg.REQUIRED}
    assert needing <= set(GOOD_ARG)


# --- random dialogues -------------------------------------------------------------------

WALK = CoreConfig(site_commands=(("CHMOD", "change mode"),), max_line=120)

ARGS: dict[str, list[str]] = {
    "USER": ["alice", "anonymous", ""],
    "PASS": ["secret", "", "a b"],
    "OPTS": ["UTF8 ON", "UTF8 OFF", "MLST type;size;", "MLST", "X"],
    "HELP": ["", "RETR", "XYZZY"],
    "SITE": ["HELP", "CHMOD 755 f", "FOO", ""],
    "TYPE": ["A", "I", "L 8", "E", "X", ""],
    "MODE": ["S", "B", "X"],
    "STRU": ["F", "R", "X"],
    "REST": ["0", "100", "-1", "abc", "²", "\u0661\u0662", "9" * 30],
    "CWD": ["sub", "..", "/", "a\\b", "x/../../y", ""],
    "RNTO": ["new", "a\\b"],
    "MDTM": ["f", "20240101000000 f", "20241399000000 f"],
    "MFMT": ["20240101000000 f", "x f", "20240101000000"],
    "STAT": ["", "-la", "/etc"],
    "EPSV": ["", "1", "2", "ALL", "3", "x"],
    "PORT": ["127,0,0,1,4,1", "1,2,3", "300,1,1,1,1,1", "1,2,3,4,5,²"],
    "EPRT": ["|1|127.0.0.1|1025|", "|2|::1|1025|", "|3|x|1|", "|1|1.2.3.4|²|", "|1|::1|1|"],
    "LIST": ["", "-la", "-la sub", "a\\b"],
    "RETR": ["f", "../../f", "\x01"],
    "STOR": ["f", "dir/f"],
}
DEFAULT_ARGS = ["", "x", "/a/b", "a\\b", "..", "a b"]
VERBS = [*sorted(COMMANDS), "XYZZY", "AUTH", "PBSZ", "PROT"]

garbage = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_characters="\r\n"),
        st.sampled_from(["\udce9", "\udcff", "²", " ", "|", ",", "/", ".", "\\"]),
    ),
    max_size=16,
)


HOT_VERBS = ["PASV", "EPSV", "PORT", "RETR", "STOR", "LIST", "ABOR", "STAT", "CWD", "RNFR", "RNTO"]


@st.composite
def command_lines(draw: st.DrawFn) -> bytes:
    verb = draw(st.one_of(st.sampled_from(HOT_VERBS), st.sampled_from(VERBS)))
    if draw(st.integers(0, 3)) == 0:
        verb = verb.lower()
    plausible = st.sampled_from(ARGS.get(verb.upper(), DEFAULT_ARGS))
    arg = draw(garbage if draw(st.integers(0, 4)) == 0 else plausible)
    text = f"{verb} {arg}" if arg else verb
    end = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
    return text.encode("utf-8", "surrogateescape") + end


#: Pipelined data-channel set-ups with a transfer, and what clients send during one.
TRANSFERS = [
    b"PASV\r\nRETR f\r\n",
    b"EPSV\r\nSTOR f\r\n",
    b"PORT 127,0,0,1,4,1\r\nLIST -la\r\n",
    b"EPRT |2|::1|2121|\r\nAPPE f\r\n",
    b"PASV\r\nMLSD\r\nNOOP\r\n",
    b"REST 10\r\nPASV\r\nRETR f\r\nPWD\r\n",
]
DURING = [b"ABOR\r\n", b"STAT\r\n", b"\xff\xf4\xff\xf2ABOR\r\n", b"QUIT\r\n", b"NOOP\r\n"]

steps = st.one_of(
    st.tuples(st.just("line"), command_lines()),
    st.tuples(st.just("transfer"), st.sampled_from(TRANSFERS)),
    st.tuples(st.just("during"), st.sampled_from(DURING)),
    st.tuples(st.just("lines"), st.lists(command_lines(), min_size=2, max_size=5).map(b"".join)),
    st.tuples(st.just("bytes"), st.binary(max_size=40)),
    st.tuples(st.just("long"), st.integers(100, 400).map(lambda n: b"NOOP " + b"x" * n + b"\n")),
    st.tuples(st.just("answer"), st.none()),
    st.tuples(st.just("answer"), st.none()),
)

OK_CODES: dict[type, list[int]] = {
    events.Authenticate: [230],
    events.ChangeDirectory: [250, 200],
    events.MakeDirectory: [257],
    events.RenameFrom: [350],
    events.RenameTo: [250],
    events.EnterPassive: [227, 229],
    events.EnterActive: [200],
    events.Reinitialize: [220],
    events.Quit: [221],
    events.Status: [211, 213],
    events.Abort: [226, 225],
    events.FileSize: [213],
    events.ModificationTime: [213],
    events.MachineListFile: [250],
}
FAIL_CODES: dict[type, list[int]] = {
    events.Authenticate: [530, 421],
    events.EnterPassive: [425, 421],
    events.EnterActive: [500, 501, 504],
    events.Reinitialize: [502],
    events.Quit: [221],
    events.Abort: [226],
}


@dataclass
class Walk:
    session: Session = field(default_factory=lambda: Session(WALK))
    #: An independent reader, to count how many complete lines were sent.
    shadow: LineReader = field(default_factory=lambda: LineReader(WALK.max_line))
    sent_lines: int = 0
    outputs: int = 0
    pending: list[events.Event] = field(default_factory=list)
    started: set[int] = field(default_factory=set)
    closed_reported: int = 0

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.session.receive_data(data)
        self.shadow.feed(data)
        while self.shadow.next_line() is not None:
            self.sent_lines += 1

    def answer(self, draw: st.DrawFn, event: events.Event) -> None:
        s = self.session
        if isinstance(event, events.Transfer):
            if id(event) not in self.started and draw(st.booleans()):
                s.send(Reply(150, "Opening data connection."), event)
                assert s.state.transfer_started
                self.started.add(id(event))
                return
            final = draw(
                st.sampled_from([226, 426, 451] if id(event) in self.started else [425, 550])
            )
        else:
            ok = draw(st.integers(0, 3)) > 0
            choices = OK_CODES.get(type(event), [250]) if ok else FAIL_CODES.get(type(event), [550])
            final = draw(st.sampled_from(choices))
        s.send(Reply(final, "reply"), event)
        # By identity, as the session does: two ABORs are equal but distinct.
        del self.pending[next(i for i, e in enumerate(self.pending) if e is event)]
        self.started.discard(id(event))
        if isinstance(event, events.Transfer):
            assert s.state.data_mode is DataMode.NONE
            assert not s.state.transfer_started

    def drain(self, draw: st.DrawFn) -> None:
        s = self.session
        while True:
            phase = s.phase
            logged_in = s.state.logged_in
            data_mode = s.state.data_mode
            event = s.next_event()
            if event is NEED_DATA:
                return
            self.check_event(event, phase, logged_in, data_mode)
            if isinstance(event, events.ConnectionClosed):
                self.closed_reported += 1
                continue
            self.outputs += 1
            if isinstance(event, events.Answer):
                s.send(event.reply, event)
                continue
            self.pending.append(event)
            if draw(st.booleans()):
                self.answer(draw, event)

    @staticmethod
    def check_event(
        event: events.Event, phase: Phase, logged_in: bool, data_mode: DataMode
    ) -> None:
        assert phase is not Phase.WAITING, event
        assert phase is not Phase.CLOSED, event
        if isinstance(event, events.Answer):
            assert 100 <= event.reply.code <= 599, event
            event.reply.encode()
            return
        if not logged_in:
            assert isinstance(
                event,
                events.Authenticate | events.Quit | events.Reinitialize | events.ConnectionClosed,
            ), (phase, event)
        if isinstance(event, events.Authenticate):
            assert phase is Phase.NEED_PASS
        if phase is Phase.TRANSFERRING:
            assert isinstance(
                event, events.Abort | events.Status | events.Quit | events.ConnectionClosed
            ), event
        if isinstance(event, events.Transfer):
            assert data_mode is not DataMode.NONE
        for name in ("path", "src", "dst", "cwd"):
            value = getattr(event, name, None)
            if isinstance(value, str):
                assert paths.resolve("/", value) == value, event

    def check_state(self) -> None:
        s = self.session
        state = s.state
        lines_waiting = len(s._held) + len(s._reader._lines)
        # Nothing lost, nothing doubled: every complete line fed gave one
        # answer or one event, or is still waiting its turn.
        assert self.outputs + lines_waiting == self.sent_lines
        assert len(s._held) <= MAX_HELD
        assert len(s._reader._buf) <= WALK.max_line + 1  # + the CR of CRLF
        assert self.closed_reported <= 1
        assert paths.resolve("/", state.cwd) == state.cwd
        if s.phase is Phase.CLOSED:
            return
        assert [id(e) for e in s._outstanding] == [id(e) for e in self.pending]
        if state.logged_in:
            assert state.username is not None
            assert state.pending_user is None
        else:
            assert state.cwd == "/"
            assert state.data_mode is DataMode.NONE
            assert state.rest == 0
            assert not state.epsv_all
            assert state.rename_from is None
        if state.transfer_started:
            assert s.transfer_outstanding is not None
        transfers = [e for e in self.pending if isinstance(e, events.Transfer)]
        assert len(transfers) <= 1
        if transfers:
            assert s.phase is Phase.TRANSFERRING
            assert state.logged_in
        elif self.pending:
            assert s.phase is Phase.WAITING
        elif state.logged_in:
            assert s.phase is Phase.READY
        else:
            assert s.phase in (Phase.NEED_USER, Phase.NEED_PASS)

    def finish(self, draw: st.DrawFn) -> None:
        """Answer everything; every line sent must then have been handled."""
        for _ in range(200):
            if not self.pending or self.session.phase is Phase.CLOSED:
                break
            self.answer(draw, self.pending[0])
            self.drain(draw)
            self.check_state()
        if self.session.phase is Phase.CLOSED:
            return
        assert not self.pending
        assert self.outputs == self.sent_lines
        self.session.receive_data(b"")
        self.drain(draw)
        assert self.closed_reported == 1
        assert self.session.next_event() is NEED_DATA


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    opening=st.sampled_from(["fresh", "logged-in", "transferring"]),
    plan=st.lists(steps, max_size=40),
)
def test_random_dialogues(data, opening, plan):
    draw = data.draw
    walk = Walk()
    s = walk.session
    if opening != "fresh":
        walk.feed(b"USER alice\r\nPASS secret\r\n")
        s.send(Reply(331, "ok"), s.next_event())
        s.send(Reply(230, "ok"), s.next_event())
        walk.outputs += 2
    if opening == "transferring":
        walk.feed(b"PASV\r\nRETR f\r\n")
        s.send(Reply(227, "ok"), s.next_event())
        retr = s.next_event()
        assert isinstance(retr, events.RetrieveFile)
        walk.outputs += 2
        walk.pending.append(retr)
        if draw(st.booleans()):
            s.send(Reply(150, "ok"), retr)
            walk.started.add(id(retr))
    walk.check_state()
    for kind, payload in plan:
        if kind == "answer":
            if walk.pending and walk.session.phase is not Phase.CLOSED:
                walk.answer(draw, draw(st.sampled_from(walk.pending)))
        else:
            walk.feed(payload)
        walk.drain(draw)
        walk.check_state()
    walk.finish(draw)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), chunks=st.lists(st.binary(max_size=60), max_size=20))
def test_random_bytes_never_raise(data, chunks):
    walk = Walk()
    for chunk in chunks:
        walk.feed(chunk)
        walk.drain(data.draw)
        walk.check_state()
    walk.finish(data.draw)
