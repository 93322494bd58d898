"""Session state as enums plus one transition table.

Which command may run when is decided here, by a lookup in :data:`TABLE`
keyed by (phase, command access class) — not by conditionals scattered
through handlers. Any pair missing from the table fails closed with 503. A
property test walks every pair.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from fileferry.protocol.listing import DEFAULT_FACTS


class Phase(enum.Enum):
    # Members are singletons compared by identity: hash them in C, not by
    # Enum's Python-level __hash__ (the phase table is looked up per command).
    __hash__ = object.__hash__

    NEED_USER = "need-user"
    NEED_PASS = "need-pass"
    #: An event is outstanding (login, file operation): later lines wait.
    WAITING = "waiting"
    READY = "ready"
    #: A transfer is outstanding: only ABOR, STAT and QUIT are acted on at once.
    TRANSFERRING = "transferring"
    CLOSED = "closed"


class Access(enum.Enum):
    """How a command relates to login and transfers (a column of the table)."""

    # Members are singletons compared by identity: hash them in C, not by
    # Enum's Python-level __hash__ (the phase table is looked up per command).
    __hash__ = object.__hash__

    #: Allowed before login (NOOP, FEAT, SYST, HELP, OPTS, TYPE...).
    FREE = "free"
    USER = "user"
    PASS = "pass"
    #: Needs a logged-in user.
    LOGIN = "login"
    #: Needs login; acted on even while a transfer runs (ABOR, STAT).
    OUT_OF_BAND = "oob"
    QUIT = "quit"


class Action(enum.Enum):
    # Members are singletons compared by identity: hash them in C, not by
    # Enum's Python-level __hash__ (the phase table is looked up per command).
    __hash__ = object.__hash__

    RUN = "run"
    #: Keep the line until the outstanding event completes.
    HOLD = "hold"
    NOT_LOGGED_IN = "530"
    BAD_SEQUENCE = "503"
    ALREADY_LOGGED_IN = "503-logged-in"
    IGNORE = "ignore"


_A = Action
TABLE: dict[tuple[Phase, Access], Action] = {
    (Phase.NEED_USER, Access.FREE): _A.RUN,
    (Phase.NEED_USER, Access.USER): _A.RUN,
    (Phase.NEED_USER, Access.PASS): _A.BAD_SEQUENCE,
    (Phase.NEED_USER, Access.LOGIN): _A.NOT_LOGGED_IN,
    (Phase.NEED_USER, Access.OUT_OF_BAND): _A.NOT_LOGGED_IN,
    (Phase.NEED_USER, Access.QUIT): _A.RUN,
    (Phase.NEED_PASS, Access.FREE): _A.RUN,
    (Phase.NEED_PASS, Access.USER): _A.RUN,
    (Phase.NEED_PASS, Access.PASS): _A.RUN,
    (Phase.NEED_PASS, Access.LOGIN): _A.NOT_LOGGED_IN,
    (Phase.NEED_PASS, Access.OUT_OF_BAND): _A.NOT_LOGGED_IN,
    (Phase.NEED_PASS, Access.QUIT): _A.RUN,
    (Phase.WAITING, Access.FREE): _A.HOLD,
    (Phase.WAITING, Access.USER): _A.HOLD,
    (Phase.WAITING, Access.PASS): _A.HOLD,
    (Phase.WAITING, Access.LOGIN): _A.HOLD,
    (Phase.WAITING, Access.OUT_OF_BAND): _A.HOLD,
    (Phase.WAITING, Access.QUIT): _A.HOLD,
    (Phase.READY, Access.FREE): _A.RUN,
    (Phase.READY, Access.USER): _A.ALREADY_LOGGED_IN,
    (Phase.READY, Access.PASS): _A.ALREADY_LOGGED_IN,
    (Phase.READY, Access.LOGIN): _A.RUN,
    (Phase.READY, Access.OUT_OF_BAND): _A.RUN,
    (Phase.READY, Access.QUIT): _A.RUN,
    (Phase.TRANSFERRING, Access.FREE): _A.HOLD,
    (Phase.TRANSFERRING, Access.USER): _A.HOLD,
    (Phase.TRANSFERRING, Access.PASS): _A.HOLD,
    (Phase.TRANSFERRING, Access.LOGIN): _A.HOLD,
    (Phase.TRANSFERRING, Access.OUT_OF_BAND): _A.RUN,
    (Phase.TRANSFERRING, Access.QUIT): _A.RUN,
}


def action(phase: Phase, access: Access) -> Action:
    """Look up what to do; a pair the table does not name fails closed."""
    if phase is Phase.CLOSED:
        return Action.IGNORE
    return TABLE.get((phase, access), Action.BAD_SEQUENCE)


class DataMode(enum.Enum):
    NONE = "none"
    PASSIVE = "passive"
    ACTIVE = "active"


@dataclass
class SessionState:
    """Everything a session remembers between commands; mutated only by the core."""

    logged_in: bool = False
    pending_user: str | None = None
    username: str | None = None
    cwd: str = "/"
    ascii: bool = True
    rest: int = 0
    rename_from: str | None = None
    data_mode: DataMode = DataMode.NONE
    epsv_all: bool = False
    utf8: bool = True
    facts: tuple[str, ...] = field(default=DEFAULT_FACTS)
    #: Set once a transfer's 150 went out; cleared by its final reply.
    transfer_started: bool = False
    #: The control connection is TLS-protected (after AUTH's 234, or implicit FTPS).
    tls_control: bool = False
    #: PBSZ was accepted (RFC 4217 requires it before PROT).
    pbsz: bool = False
    #: PROT P: data connections must be TLS too.
    prot_private: bool = False
    #: HASH's algorithm (OPTS HASH); the default is one of ``hashcommands.ALGORITHMS``.
    hash_algorithm: str = "SHA-256"
    #: RANG's octet range for the next HASH, end inclusive as the draft counts.
    hash_range: tuple[int, int] | None = None

    def reset_login(self) -> None:
        """Back to a fresh connection's state (REIN, failed login).

        The TLS facts describe the transport, which a logout does not change,
        so they are kept: forgetting them would let a client act as if the
        connection were clear text while it is not (or the other way round).
        """
        keep = (self.tls_control, self.pbsz, self.prot_private)
        fresh = SessionState()
        self.__dict__.update(fresh.__dict__)
        self.tls_control, self.pbsz, self.prot_private = keep
