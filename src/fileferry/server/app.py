"""The composition root: where configuration, storage, users and sockets meet.

Nothing else in the server constructs a storage backend or a user store: they
come from :mod:`fileferry.backends` (chosen by the scheme of ``root`` and
``db``), or from constructor arguments of an embedding program.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from fileferry.backends import open_storage, open_users, scheme_of
from fileferry.config import ServerConfig
from fileferry.limits.factory import make_limits
from fileferry.limits.keys import client_key
from fileferry.limits.table import LockLost
from fileferry.observability import Dispatcher, Observer
from fileferry.observability.standard import standard_observers
from fileferry.protocol.commands import CoreConfig, site_commands
from fileferry.server.accounts import AccountRegistry
from fileferry.server.control import ControlConnection
from fileferry.server.datapath import DataPaths
from fileferry.server.listen import LISTEN_BACKLOG, bind_or_explain
from fileferry.server.listen import tune_control as _tune
from fileferry.server.ports import PassiveShare, share_of
from fileferry.server.proxied import TrustedProxies
from fileferry.server.shutdown import ABORT_WAIT, StopDeadline, wait_tasks
from fileferry.server.sweeper import Sweeper
from fileferry.server.tlspump import PUMP_THREADS, PumpPool
from fileferry.storage.base import Capabilities, Storage
from fileferry.users.base import Account, UserStore

if TYPE_CHECKING:
    from fileferry.limits.shared import SharedLimits
    from fileferry.observability.hooks import HookRunner
    from fileferry.observability.metricshttp import MetricsEndpoint
    from fileferry.server.context import UploadGate
    from fileferry.server.implicit import ImplicitListener
    from fileferry.server.tls import SelfSigned, TLSManager
    from fileferry.webadmin.service import AdminService

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


def _shared_database(config: ServerConfig) -> str | None:
    """The database every node shares its limits through: a PostgreSQL ``db``."""
    db = config.user_store.db
    return db if db is not None and scheme_of(db) in ("postgresql", "postgres") else None


def _hook_runner(config: ServerConfig) -> HookRunner | None:
    """The ``[[hook]]`` observer, if any hook is configured (else not even imported)."""
    if not config.hooks:
        return None
    from fileferry.observability.hooks import HookRunner

    return HookRunner(config.hooks, config.limits.hooks)


def _passive_share(config: ServerConfig) -> PassiveShare | None:
    """This worker's cap on the passive listeners of one address (with a range only)."""
    data = config.data
    if data.passive_ports is None:
        return None
    return PassiveShare(share_of(data.passive_ports, data.passive_per_ip, config.workers))


class App:
    """Shared state of one server: config, stores, and the live sessions.

    ``shared``: the limit tables of a server with several workers, seen by
    this worker (:meth:`SharedLimits.for_worker`); without it the session
    caps, bans, account sessions and quotas are this process's alone. The
    choice is made here, once (:func:`make_limits`); with an SQLite ``db``,
    quota figures survive restarts in ``<db>.usage``.

    ``observers``: callables given every session event; by default the
    session log plus the xferlog and metrics the configuration asks for
    (``observability/standard.py``). A list replaces that default (include
    a ``SessionLog`` to keep the log lines); ``/metrics`` serves the first
    observer with an ``exposition()``. ``node``: ``--node-name``, else the
    host name, for logs and state shared with other nodes.

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
        self.node = config.node
        own = standard_observers(config) if observers is None else []
        chosen = tuple(own) if observers is None else tuple(observers)
        self.hooks = _hook_runner(config)
        if self.hooks is not None:
            chosen = (*chosen, self.hooks)
        self.dispatcher = Dispatcher(chosen)
        #: Observers made here, closed by :meth:`close` (an xferlog's file).
        self._own_observers = own
        #: What ``/metrics`` renders, if metrics are on.
        self.metrics = next((o for o in chosen if hasattr(o, "exposition")), None)
        #: Counts TLS handshakes of data and implicit connections (control
        #: connections' AUTH TLS reach the metrics as events).
        self.count_tls: Callable[[str], None] | None = getattr(self.metrics, "count_tls", None)
        #: The ``before_reply`` upload hooks, as the check each upload passes.
        self.upload_gate: UploadGate | None = (
            self.hooks.check_upload if self.hooks is not None and self.hooks.gates else None
        )
        self.users = users or open_users(config)
        self._provider = None if storage_for else open_storage(config)
        self.storage_for: StorageFactory = storage_for or self._provider  # type: ignore[assignment]
        self._self_signed: SelfSigned | None = None
        self.tls: TLSManager | None = None
        if config.tls.self_signed or (config.tls.cert and config.tls.key):
            # The TLS modules (and a certificate generator) only when TLS is set up.
            from fileferry.server.tls import TLSManager, make_self_signed

            if config.tls.self_signed:
                self._self_signed = make_self_signed([config.host])
                self.tls = TLSManager(self._self_signed.cert, self._self_signed.key)
            else:
                assert config.tls.cert and config.tls.key
                self.tls = TLSManager(config.tls.cert, config.tls.key)
        self.limits = make_limits(
            config,
            shared,
            _usage_file(config),
            database=_shared_database(config),
            node=config.node,
        )
        self.accounts = AccountRegistry(config, self.limits)
        self.core_config = self._core_config()
        self.sessions: set[asyncio.Task[None]] = set()
        self.counter = self.limits.sessions
        self.defender = self.limits.bans
        self.login_checks = self.limits.logins
        self.passive_share = _passive_share(config)
        proxy = config.proxy
        #: Behind a balancer (``--proxy-protocol``): whose PROXY headers to believe.
        self.proxies = (
            TrustedProxies(proxy.trusted, proxy.header_timeout) if proxy.protocol else None
        )
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
        for observer in self._own_observers:
            if hasattr(observer, "close"):
                observer.close()
        if self.hooks is not None:
            await self.hooks.close()
        await self.users.close()
        await self.limits.quotas.close()
        if self._provider is not None:
            await self._provider.close()
        if self._own_pumps:
            self.pumps.close()
        if self._self_signed is not None:
            import shutil  # here: shutil brings bz2 and lzma, which a server never uses

            shutil.rmtree(self._self_signed.directory, ignore_errors=True)


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
        self._metrics_http: MetricsEndpoint | None = None
        self._stopped = asyncio.Event()
        #: The live sessions' connections, for a drain to talk to.
        self._connections: dict[asyncio.Task[None], ControlConnection] = {}
        self._draining = False
        #: When a stop under way aborts what still runs; a later ``stop`` moves it closer.
        self._deadline = StopDeadline()
        #: The web admin (``--admin``), once started; see server/adminhost.py.
        self.admin: AdminService | None = None

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

    async def start(
        self,
        sock: socket.socket | None = None,
        implicit_sock: socket.socket | None = None,
        metrics_sock: socket.socket | None = None,
    ) -> None:
        """Bind and listen; a ``ListenError`` names the port that failed.

        ``sock``, ``implicit_sock`` and ``metrics_sock``: listening sockets
        made by someone else (a worker's, inherited from the supervisor),
        used instead of binding ``config.port``, ``config.tls.implicit_port``
        and ``config.metrics.address``; the server owns and closes them.
        """
        if self.app.metrics is not None:  # first: nothing else to undo if its port is taken
            from fileferry.observability.metricshttp import serve_metrics

            address, render = self.config.metrics.address, self.app.metrics.exposition
            self._metrics_http = await serve_metrics(render, metrics_sock, address, bind_or_explain)
        if sock is None:
            sock = bind_or_explain(self.config.host, self.config.port)
        self._server = await asyncio.start_server(
            self._on_connect,
            sock=sock,
            limit=2**16,
            backlog=LISTEN_BACKLOG,
        )
        if implicit_sock is None and self.config.tls.implicit_port is not None:
            try:
                implicit_sock = bind_or_explain(self.config.host, self.config.tls.implicit_port)
            except OSError:
                self._server.close()
                raise
        if implicit_sock is not None:
            from fileferry.server.implicit import ImplicitListener

            self._implicit = ImplicitListener(
                implicit_sock,
                backlog=LISTEN_BACKLOG,
                admit=self._admit_implicit,
                release=self.app.counter.release,
                context=self._tls_context,
                handshake_timeout=self.config.data.accept_timeout,
                run=self._session,
                identify=self.app.proxies.implicit_client if self.app.proxies else None,
                on_handshake=self.app.count_tls,
            )
        if self.config.admin.listen is not None:
            try:
                self.admin = await self._start_admin()
            except BaseException:
                self._server.close()
                if self._implicit is not None:
                    self._implicit.close()
                raise
        if self.app.sweeper is not None:
            self.app.sweeper.start()  # dead uploads' hidden files: now, then periodically

    async def _start_admin(self) -> AdminService:
        """The web admin (server/adminhost.py); it owns a connection to the user database."""
        from fileferry.backends import user_store_backend
        from fileferry.server.adminhost import start_admin

        db = self.config.user_store.db or ""  # config/validate.py: there is one
        store = user_store_backend(db).open(db, create=False)
        return await start_admin(self.app, self._connections, store, bind_or_explain)

    def reload_tls(self) -> bool:
        """SIGHUP: new sessions get the re-read certificate; running ones keep theirs."""
        return self.app.tls.reload() if self.app.tls is not None else False

    def hangup(self) -> None:
        """SIGHUP: re-read the certificate; observers writing files (xferlog) reopen them."""
        self.reload_tls()
        for observer in self.app.dispatcher.observers:
            if hasattr(observer, "reopen"):
                observer.reopen()

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """Where ``/metrics`` is served, if it is."""
        return self._metrics_http.address if self._metrics_http is not None else None

    def _on_connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Coroutine[Any, Any, None] | None:
        """A new control connection: the coroutine its task runs, or None if refused.

        A plain function rather than a coroutine: admission needs no wait
        (unless a PROXY header must be read first), and the session's
        coroutine then runs as the task itself, one frame less to resume
        each time the client's next command wakes it.
        """
        sock: socket.socket | None = writer.get_extra_info("socket")
        if sock is not None:
            _tune(sock, nodelay=False)  # the loop's transport set TCP_NODELAY
        peer: str = writer.get_extra_info("peername")[0]
        if self.app.proxies is not None:
            return self._on_proxied(reader, writer, peer)
        key = client_key(peer)
        if not self._admitted(key, writer):
            return None
        return self._session(reader, writer, None, key, None, peer)

    async def _on_proxied(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
    ) -> None:
        """Behind a balancer: the client is the one its PROXY header names."""
        assert self.app.proxies is not None
        client = await self.app.proxies.control_client(reader, peer)
        if client is None:  # refused (and logged): not a word to a stranger
            writer.close()
            return
        key = client_key(client)
        if self._admitted(key, writer):
            await self._session(reader, writer, None, key, client, peer)

    def _admitted(self, key: str, writer: asyncio.StreamWriter) -> bool:
        """Admit ``key``'s new connection, or refuse it with a 421 and close it."""
        refusal = self._admission(key)
        if refusal is None:
            return True
        log.info("refused %s: %s", key, refusal)
        with contextlib.suppress(Exception):
            writer.write(f"421 {refusal}\r\n".encode())
            writer.close()
        return False

    def _admit_implicit(self, sock: socket.socket, client: str | None) -> str | None:
        """Admission for implicit FTPS, before any handshake: the key, or None.

        ``client``: the address a trusted balancer's PROXY header named.
        """
        try:
            key = client_key(client or sock.getpeername()[0])
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
        client: str | None = None,
        peer: str | None = None,
    ) -> None:
        """Run one admitted session to its end; its admission slot is released after.

        ``client``: the address a trusted balancer's PROXY header named;
        ``peer``: the socket's, if the caller looked it up already.
        """
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
                peer_host=client or peer,
            )
            self._connections[task] = conn
            if self._draining:  # admitted just before the listener closed
                conn.drain()
            await conn.run()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("session crashed")
        finally:
            self.app.counter.release(key)
            self.app.sessions.discard(task)
            self._connections.pop(task, None)

    def _admission(self, key: str) -> str | None:
        """Why a new connection from ``key`` is turned away, or None to admit it."""
        try:
            banned = self.app.defender.banned_for(key)
            if banned:
                wait = int(banned) + 1
                return f"Too many failed logins from your address; try again in {wait} s."
            return self.app.counter.admit(key)
        except LockLost:  # a worker died inside the shared tables; the supervisor frees them
            log.warning("refused %s: the shared limits are locked by a dead worker", key)
            return "Server busy; try again later."

    async def serve_forever(self) -> None:
        await self._stopped.wait()

    async def stop(self, grace: float = 0.0) -> None:
        """Stop accepting, end every session, release stores.

        Idle sessions are told 421 and closed at once. Running transfers
        get ``grace`` seconds to finish (then 226 and 421); what still runs
        after that is aborted: 426 on the transfer, 421 on the session, an
        upload discarded. ``stop()`` alone is all of that without a grace.
        Called again while a stop is under way, it brings that stop's end
        forward to its own ``grace`` and returns when the server stopped.
        """
        if self._draining:
            self._deadline.hurry(grace)
            await self._stopped.wait()
            return
        self._draining = True
        self._deadline.set(grace)
        if self._server is not None:
            self._server.close()
        if self._implicit is not None:
            self._implicit.stop_accepting()
        for conn in list(self._connections.values()):
            conn.drain()
        await self._deadline.wait(self.app.sessions)
        if self.app.sessions:
            if grace > 0:
                log.warning("shutdown: grace over, aborting %d session(s)", len(self.app.sessions))
            for conn in list(self._connections.values()):
                conn.abort_for_shutdown()
            await wait_tasks(self.app.sessions, ABORT_WAIT)
        # What did not end by itself (a handler stuck in storage) is cancelled.
        sessions = list(self.app.sessions)
        for task in sessions:
            task.cancel()
        if self._implicit is not None:
            self._implicit.close()
        await wait_tasks(sessions, 10)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        if self.admin is not None:
            await self.admin.close()  # and its store
        if self._metrics_http is not None:
            await self._metrics_http.close()
        await self.app.close()
        self._stopped.set()

    async def __aenter__(self) -> FTPServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
