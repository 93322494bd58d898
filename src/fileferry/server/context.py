"""What a command handler may read and do: the session context.

Handlers used to take the whole ``ControlConnection`` and reach into its
forty attributes, which welded them to the shell (and made ``server/`` one
import cycle). They now see only this protocol: the session's facts, its
login, its data channel, a permission check, and ``emit`` for outcomes. They
answer by *returning* a :class:`~fileferry.protocol.replies.Reply` (or a
transfer job, which the shell runs as a task); the shell sends it, owns the
read loop and the transport. The only replies a handler sends itself are a
transfer's (its 150 and final reply come from the transfer task, later).

``ControlConnection`` is the implementation; a test or another shell (say,
one driven by a web admin's "kick this session") can provide its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

if TYPE_CHECKING:
    import ssl

    from fileferry.config import ServerConfig
    from fileferry.limits.interfaces import BanList, LoginChecks
    from fileferry.observability.events import FileUploaded, Origin, SessionEvent
    from fileferry.protocol.events import Event
    from fileferry.protocol.replies import Reply
    from fileferry.protocol.state import SessionState
    from fileferry.server.accounts import AccountRegistry, Lease
    from fileferry.server.datachannel import DataChannel
    from fileferry.server.datapath import DataPaths
    from fileferry.server.handlers.transfers import Job
    from fileferry.server.ports import PassiveShare
    from fileferry.server.proxied import TrustedProxies
    from fileferry.server.tls import TLSManager
    from fileferry.storage.base import Storage
    from fileferry.users.base import Account, UserStore


class Services(Protocol):
    """The server-wide objects a session uses (the ``App`` provides them)."""

    @property
    def config(self) -> ServerConfig: ...

    @property
    def users(self) -> UserStore: ...

    @property
    def accounts(self) -> AccountRegistry: ...

    @property
    def defender(self) -> BanList: ...

    @property
    def login_checks(self) -> LoginChecks: ...

    @property
    def passive_share(self) -> PassiveShare | None:
        """Passive listeners per client address (None: no port range, no cap)."""
        ...

    @property
    def tls(self) -> TLSManager | None: ...

    @property
    def proxies(self) -> TrustedProxies | None:
        """The balancers whose PROXY headers are believed (None: ``--proxy-protocol`` off)."""
        ...

    def storage_for(self, account: Account, /) -> Storage: ...

    @property
    def data_paths(self) -> DataPaths:
        """Runs each transfer's bytes on the route ``server/datapath`` picks."""
        ...

    @property
    def count_tls(self) -> Callable[[str], None] | None:
        """Counts a TLS handshake on a data or implicit connection by result (metrics)."""
        ...

    @property
    def upload_gate(self) -> UploadGate | None:
        """The check a committed upload passes before its 226 (``before_reply`` hooks)."""
        ...


class SessionContext(Protocol):
    """One session as its handlers see it."""

    #: The session's number in the log (``session=N``).
    id: int
    peer_host: str
    #: The client's address as limits and bans count it (an IPv6 /64...).
    client_key: str
    services: Services
    #: Shorthand for ``services.config``.
    config: ServerConfig
    #: The logged-in account and its storage and limits; ``None`` before login.
    account: Account | None
    storage: Storage | None
    lease: Lease | None
    #: The control connection's TLS context, once it is protected.
    tls_context: ssl.SSLContext | None
    #: When a client that has not logged in is cut off (``time.monotonic``).
    login_deadline: float
    #: Set to end the session after the reply being sent.
    closing: bool
    #: Set while ABOR stops a transfer, so the transfer answers 426.
    aborting: bool

    @property
    def local_host(self) -> str:
        """The server's address on the control connection (looked up on first use)."""
        ...

    @property
    def data(self) -> DataChannel:
        """The session's data channel (PASV/PORT state), built on first use."""
        ...

    @property
    def state(self) -> SessionState:
        """The protocol core's view of the session (read it; the core changes it)."""
        ...

    @property
    def origin(self) -> Origin:
        """Who events are about, as of now (it changes at login and logout)."""
        ...

    @property
    def observed(self) -> bool:
        """Whether anyone listens to events (if not, don't bother building one)."""
        ...

    def wants(self, kind: type[SessionEvent]) -> bool:
        """Whether an observer subscribed to ``kind`` (if not, emitting it is wasted work)."""
        ...

    @property
    def transfer_running(self) -> bool: ...

    def require(self, letter: str, path: str) -> Storage:
        """The user's storage, if the account holds permission ``letter`` at ``path``.

        Raises ``PermissionDenied`` (550) otherwise.
        """
        ...

    def reply(self, reply: Reply, event: Event | None = None) -> None:
        """Send ``reply`` now; only for replies that do not end a handler (a 150...)."""
        ...

    def emit(self, event: SessionEvent) -> None:
        """Report an outcome to the server's observers (after this loop turn)."""
        ...

    async def wait_transfer(self) -> None:
        """Return when the running transfer (if any) has sent its final reply."""
        ...

    async def stop_transfer(self) -> None:
        """Abort the running transfer (it answers 426) and wait for its cleanup."""
        ...

    async def start_tls(self) -> bool:
        """Protect the control connection (after a 234 went out); False: close it.

        The shell owns the transport: it refuses clear text the client sent
        behind AUTH, runs the handshake under the accept timeout, and emits
        the TLS events.
        """
        ...


#: What a handler gives back: a reply to send, a transfer to run, or ``None``
#: when the session needs no answer (the connection is closing).
Outcome: TypeAlias = "Reply | Job | None"
Handler: TypeAlias = Callable[[SessionContext, Any], Awaitable[Outcome]]
#: Checks a committed upload before its 226: ``None`` accepts it, a text refuses
#: it (the 550's reason). The ``before_reply`` hooks are one.
UploadGate: TypeAlias = "Callable[[FileUploaded], Awaitable[str | None]]"
