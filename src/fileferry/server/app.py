"""The composition root: where configuration, storage, users and sockets meet.

Nothing else in the server constructs a storage backend or a user store: they
come from :mod:`fileferry.backends` (chosen by the scheme of ``root`` and
``db``), or from constructor arguments of an embedding program.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import ssl
from collections.abc import Callable, Iterable

from fileferry.backends import open_storage, open_users, scheme_of
from fileferry.config import ServerConfig
from fileferry.limits.factory import make_limits
from fileferry.limits.keys import client_key
from fileferry.limits.shared import SharedLimits
from fileferry.observability import Dispatcher, Observer, SessionLog
from fileferry.protocol.commands import CoreConfig, site_commands
from fileferry.server.accounts import AccountRegistry
from fileferry.server.control import ControlConnection
from fileferry.server.datapath import DataPaths
from fileferry.server.implicit import ImplicitListener
from fileferry.server.sweeper import Sweeper
from fileferry.server.tls import SelfSigned, TLSManager, make_self_signed
from fileferry.server.tlspump import PUMP_THREADS, PumpPool
from fileferry.storage.base import Capabilities, Storage
from fileferry.users.base import Account, UserStore

log = logging.getLogger("fileferry.server")

StorageFactory = Callable[[Account], Storage]


def _usage_file(config: ServerConfig) -> str | None:
    """Where quota figures outlive a run: beside an SQLite user database.

    Another user store (a database server) would keep them itself; without
    one, figures are walked at each account's first login of a run.
    """
    db = config.user_store.db
    if db is None or scheme_of(db) != "file":
        return None
    return f"{db}.usage"


class App:
    """Shared state of one server: config, stores, and the live sessions.

    ``shared``: the limit tables of a server with several workers, seen by
    this worker (:meth:`SharedLimits.for_worker`); without it the session
    caps, bans, account sessions and quotas are this process's alone. The
    choice is made here, once (:func:`make_limits`); with an SQLite ``db``,
    quota figures survive restarts in ``<db>.usage``.

    ``observers``: callables given every session event
    (:mod:`fileferry.observability.events`); by default the session log
    alone. A list replaces that default, so include
    :class:`~fileferry.observability.SessionLog` to keep the log lines.

    ``pumps``: the threads that run TLS data transfers; made here (and shut
    down by :meth:`close`) unless passed in, e.g. by a test that wants a
    small pool and its counters. ``data_paths`` runs every transfer with them.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        users: UserStore | None = None,
        storage_for: StorageFactory | None = None,
        shared: SharedLimits | None = None,
        observers: Iterable[Observer] | None = None,
        pumps: PumpPool | None = None,
    ) -> None:
        self.config = config
        self._own_pumps = pumps is None
        self.pumps = pumps if pumps is not None else PumpPool(PUMP_THREADS)
        self.data_paths = DataPaths(self.pumps)
        self.dispatcher = Dispatcher((SessionLog(),) if observers is None else observers)
        self.users = users or open_users(config)
        self._provider = None if storage_for else open_storage(config)
        self.storage_for: StorageFactory = storage_for or self._provider  # type: ignore[assignment]
        self._self_signed: SelfSigned | None = None
        self.tls: TLSManager | None = None
        if config.tls.self_signed:
            self._self_signed = make_self_signed([config.host])
            self.tls = TLSManager(self._self_signed.cert, self._self_signed.key)
        elif config.tls.cert and config.tls.key:
            self.tls = TLSManager(config.tls.cert, config.tls.key)
        self.limits = make_limits(config, shared, _usage_file(config))
        self.accounts = AccountRegistry(config, self.limits)
        self.core_config = self._core_config()
        self.sessions: set[asyncio.Task[None]] = set()
        self.counter = self.limits.sessions
        self.defender = self.limits.bans
        storage = config.storage
        self.sweeper = (
            Sweeper(self._provider, storage.temp_max_age, storage.partial_max_age)
            if hasattr(self._provider, "sweep")
            else None
        )

    def _core_config(self) -> CoreConfig:
        """The protocol core's view of this server: what FEAT, HELP and SITE offer.

        FEAT is answered before login, when the user's storage is not known
        yet: it describes the storage the server's factory declares
        (``storage_for.capabilities``: local disk by default; a factory
        without the attribute is taken to have the base ``Capabilities``).
        A user whose storage turns out to lack one (a mount of another
        backend) is answered by that storage's own refusal.
        """
        config = self.config
        caps: Capabilities = getattr(self.storage_for, "capabilities", Capabilities())
        capabilities = frozenset(
            {"available_space"}
            | ({"set_mtime"} if caps.set_mtime else set())
            | ({"set_mode"} if caps.set_mode else set())
        )
        return CoreConfig(
            max_line=config.limits.sessions.max_line,
            site_commands=site_commands(
                capabilities, frozenset({"EXEC"}) if config.site_exec else frozenset()
            ),
            tls_available=self.tls is not None,
            tls_required=config.tls.required,
            capabilities=capabilities,
        )

    async def close(self) -> None:
        """Release what the composition root created (not what was passed in)."""
        if self.sweeper is not None:
            await self.sweeper.close()
        self.dispatcher.flush()
        await self.users.close()
        await self.limits.quotas.close()
        if self._provider is not None:
            await self._provider.close()
        if self._own_pumps:
            self.pumps.close()
        if self._self_signed is not None:
            shutil.rmtree(self._self_signed.directory, ignore_errors=True)


#: Pending connections the kernel may queue for us (capped by net.core.somaxconn).
#: asyncio would otherwise re-listen with 100, and a burst of clients (300
#: logging in at once) would overflow it and wait for SYN retransmits.
LISTEN_BACKLOG = 4096


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """The listening socket; ``::`` is dual stack (IPv4 clients too).

    ``reuse_port``: several worker processes bind the same port and the kernel
    spreads new connections over them (SO_REUSEPORT; see ``server/workers.py``).
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class ListenError(OSError):
    """A listening socket could not be opened; ``port`` says which one."""

    def __init__(self, errno_: int | None, strerror: str | None, port: int) -> None:
        super().__init__(errno_, strerror)
        self.port = port


def _tune(sock: socket.socket) -> None:
    """Options every control connection gets."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Telnet "urgent" bytes (sent with ABOR) stay in the stream to be parsed.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)


def _bind_or_explain(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    try:
        return bind_socket(host, port, reuse_port=reuse_port)
    except OSError as exc:
        raise ListenError(exc.errno, exc.strerror, port) from exc


class FTPServer:
    """A running fileferry server; use ``async with FTPServer(config):`` or start/stop."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        users: UserStore | None = None,
        storage_for: StorageFactory | None = None,
        shared: SharedLimits | None = None,
        observers: Iterable[Observer] | None = None,
        pumps: PumpPool | None = None,
    ) -> None:
        self.app = App(
            config,
            users=users,
            storage_for=storage_for,
            shared=shared,
            observers=observers,
            pumps=pumps,
        )
        self._server: asyncio.Server | None = None
        self._implicit: ImplicitListener | None = None
        self._stopped = asyncio.Event()

    @property
    def config(self) -> ServerConfig:
        return self.app.config

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually listened on (port 0 resolved)."""
        assert self._server is not None, "server not started"
        name = self._server.sockets[0].getsockname()
        return name[0], name[1]

    @property
    def url(self) -> str:
        host, port = self.address
        return f"ftp://[{host}]:{port}" if ":" in host else f"ftp://{host}:{port}"

    @property
    def implicit_address(self) -> tuple[str, int] | None:
        """Where implicit FTPS listens, if it does."""
        return self._implicit.address if self._implicit is not None else None

    async def start(self) -> None:
        """Bind and listen; a ``ListenError`` names the port that failed."""
        workers = self.config.workers > 1
        sock = _bind_or_explain(self.config.host, self.config.port, workers)
        self._server = await asyncio.start_server(
            self._on_connect,
            sock=sock,
            limit=2**16,
            backlog=LISTEN_BACKLOG,
        )
        if self.config.tls.implicit_port is not None:
            try:
                isock = _bind_or_explain(self.config.host, self.config.tls.implicit_port, workers)
            except OSError:
                self._server.close()
                raise
            self._implicit = ImplicitListener(
                isock,
                backlog=LISTEN_BACKLOG,
                admit=self._admit_implicit,
                release=self.app.counter.release,
                context=self._tls_context,
                handshake_timeout=self.config.data.accept_timeout,
                run=self._session,
            )
        if self.app.sweeper is not None:
            self.app.sweeper.start()  # dead uploads' hidden files: now, then periodically

    def reload_tls(self) -> bool:
        """SIGHUP: new sessions get the re-read certificate; running ones keep theirs."""
        return self.app.tls.reload() if self.app.tls is not None else False

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock: socket.socket | None = writer.get_extra_info("socket")
        if sock is not None:
            _tune(sock)
        key = client_key(writer.get_extra_info("peername")[0])
        refusal = self._admission(key)
        if refusal is not None:
            log.info("refused %s: %s", key, refusal)
            with contextlib.suppress(Exception):
                writer.write(f"421 {refusal}\r\n".encode())
                writer.close()
            return
        await self._session(reader, writer, None, key)

    def _admit_implicit(self, sock: socket.socket) -> str | None:
        """Admission for implicit FTPS, before any handshake: the key, or None."""
        try:
            key = client_key(sock.getpeername()[0])
        except OSError:
            return None  # already gone
        refusal = self._admission(key)
        if refusal is not None:
            log.info("refused %s: %s", key, refusal)
            return None
        _tune(sock)
        return key

    def _tls_context(self) -> ssl.SSLContext:
        assert self.app.tls is not None
        return self.app.tls.context

    async def _session(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tls_context: ssl.SSLContext | None,
        key: str,
    ) -> None:
        """Run one admitted session to its end; its admission slot is released after."""
        task = asyncio.current_task()
        assert task is not None
        self.app.sessions.add(task)
        try:
            app = self.app
            conn = ControlConnection(
                app,
                reader,
                writer,
                core=app.core_config,
                dispatcher=app.dispatcher,
                tls_context=tls_context,
            )
            await conn.run()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("session crashed")
        finally:
            self.app.counter.release(key)
            self.app.sessions.discard(task)

    def _admission(self, key: str) -> str | None:
        """Why a new connection from ``key`` is turned away, or None to admit it."""
        banned = self.app.defender.banned_for(key)
        if banned:
            return f"Too many failed logins from your address; try again in {int(banned) + 1} s."
        return self.app.counter.admit(key)

    async def serve_forever(self) -> None:
        await self._stopped.wait()

    async def stop(self) -> None:
        """Stop accepting, end every session (aborting uploads), release stores."""
        if self._server is not None:
            self._server.close()
        if self._implicit is not None:
            self._implicit.close()
        sessions = list(self.app.sessions)
        for task in sessions:
            task.cancel()
        if sessions:
            await asyncio.wait(sessions, timeout=10)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        await self.app.close()
        self._stopped.set()

    async def __aenter__(self) -> FTPServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
