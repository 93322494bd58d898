"""One control connection: read lines, feed the core, run its events.

The loop is deliberately small: wait for bytes from the client (or for a
running transfer to finish), hand them to the sans-I/O session, and dispatch
each event it produces through the handler table. Handlers see the
connection only as a :class:`~fileferry.server.context.SessionContext` and
return their reply (or a transfer job); this shell sends it. Transfers run
as a task of their own so that ABOR, STAT and QUIT are heard while data
flows; every other event is handled in line, which keeps replies in order.

Nothing in ``server/`` imports this module but the composition root
(``app.py``), and this module imports no ``app``: what it needs of the
server comes in as constructor arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import ssl
import time
from typing import TYPE_CHECKING

from fileferry.errors import PermissionDenied, StorageError
from fileferry.limits.keys import client_key
from fileferry.limits.table import LockLost
from fileferry.limits.throttle import CommandRate
from fileferry.observability import events as seen
from fileferry.observability.dispatch import Dispatcher
from fileferry.observability.events import Origin
from fileferry.protocol import events
from fileferry.protocol.replies import Reply
from fileferry.protocol.session import Session
from fileferry.server.datachannel import DataChannel, DataConnection
from fileferry.server.handlers import HANDLERS, transfers
from fileferry.server.login import ban_refusal

if TYPE_CHECKING:
    from fileferry.protocol.commands import CoreConfig
    from fileferry.protocol.state import SessionState
    from fileferry.server.accounts import Lease
    from fileferry.server.context import Services
    from fileferry.storage.base import Storage
    from fileferry.users.base import Account

log = logging.getLogger("fileferry.session")

_READ_SIZE = 16384
_ids = itertools.count(1)
_NO_OBSERVERS = Dispatcher()


class ControlConnection:
    """Everything the server keeps for one client."""

    # Slots, because a server holds one of these per session: past 30 attributes
    # an instance's dict stops sharing its keys with the other instances and
    # costs ~1.5 KiB each (0.45 MiB for 300 sessions); in slots they take ~0.3.
    # "__dict__" keeps any attribute not listed here working (at the old cost):
    # tests/server/test_session_layout.py says which one to add.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_count_commands",
        "_data",
        "_dispatcher",
        "_expired",
        "_local_host",
        "_loop",
        "_origin",
        "_parked",
        "_read_due",
        "_read_span",
        "_task",
        "_transport",
        "_watchdog",
        "aborting",
        "account",
        "client_key",
        "closing",
        "config",
        "draining",
        "farewell",
        "id",
        "idle_since",
        "lease",
        "login_deadline",
        "peer_host",
        "rate",
        "reader",
        "services",
        "session",
        "started",
        "storage",
        "tls_context",
        "transfer_job",
        "transfer_task",
        "writer",
    )

    def __init__(
        self,
        services: Services,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        core: CoreConfig,
        dispatcher: Dispatcher = _NO_OBSERVERS,
        tls_context: ssl.SSLContext | None = None,
        peer_host: str | None = None,
    ) -> None:
        """``peer_host``: the client's address (the socket's peer, or the one a
        trusted balancer's PROXY header named) if the caller has it already."""
        self.services = services
        self.config = config = services.config
        self._dispatcher = dispatcher
        #: Someone counts commands (metrics): build an event per command.
        self._count_commands = dispatcher.detailed and (
            bool(dispatcher.command_counters) or dispatcher.command_events
        )
        self.id = next(_ids)
        self.reader = reader
        self.writer = writer
        #: The writer's transport, written to directly: ``StreamWriter.write``
        #: and ``is_closing`` only forward to it, a Python call each per reply.
        #: Replaced when TLS starts (:meth:`start_tls`).
        self._transport: asyncio.WriteTransport = writer.transport
        #: The running loop, taken once in :meth:`run` rather than asked per read.
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The TLS context of this session's control connection; its data
        #: connections use the same one so that they can resume its session.
        self.tls_context = tls_context
        self.session = Session(core, implicit_tls=tls_context is not None)
        self.rate = CommandRate(config.limits.sessions.commands_per_second)
        self.login_deadline = time.monotonic() + config.limits.sessions.login_timeout
        self.peer_host: str = peer_host or writer.get_extra_info("peername")[0]
        self.client_key = client_key(self.peer_host)
        #: Looked up on first use (PASV, EPSV, PORT): see :attr:`local_host`.
        self._local_host: str | None = None
        self._origin = Origin(self.id, self.peer_host)
        self.account: Account | None = None
        self.storage: Storage | None = None
        #: The logged-in account's share of limits (throttles, quota, session slot).
        self.lease: Lease | None = None
        #: Built on first use: see :attr:`data`.
        self._data: DataChannel | None = None
        self.transfer_task: asyncio.Task[None] | None = None
        self.transfer_job: transfers.Job | None = None
        #: Set by ABOR so the transfer task answers 426 instead of re-raising.
        self.aborting = False
        self.closing = False
        #: The server is shutting down: 421 and close as soon as no transfer runs.
        self.draining = False
        #: Waiting for the client's next bytes with nothing else in hand, so a
        #: drain may end the session right away (see :meth:`drain`).
        self._parked = False
        self._task: asyncio.Task[None] | None = None
        #: The idle/login deadline of the read in progress (loop time), or
        #: None outside :meth:`_read_idle`; one watchdog timer per session
        #: checks it, instead of a timer armed and cancelled per command.
        #: The web admin (server/live.py) reads it too: the read began
        #: ``_read_span`` seconds before it, which is when the client was
        #: last heard from. Nothing per command beyond these two stores.
        self._read_due: float | None = None
        self._read_span = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._expired = False
        #: When the session began, and since when it has waited on the other
        #: read path (after a transfer), for the web admin.
        self.started = self.idle_since = time.monotonic()
        #: The 421 text a session ended from outside (shutdown, an admin's kick) gets.
        self.farewell = "Server shutting down."

    # --- the session context (server/context.py) --------------------------------

    @property
    def state(self) -> SessionState:
        return self.session.state

    @property
    def local_host(self) -> str:
        """The server's address on this connection: only PASV/EPSV/PORT need it,
        so a session that never sets up a transfer never asks the socket."""
        host = self._local_host
        if host is None:
            host = self._local_host = self.writer.get_extra_info("sockname")[0]
        return host

    @property
    def data(self) -> DataChannel:
        """This session's data channel, built at its first use: sessions that
        never transfer (a login and a few commands) do not pay for it."""
        data = self._data
        if data is None:
            services, config = self.services, self.config
            local = self.local_host
            data = self._data = DataChannel(
                peer_host=self.peer_host,
                local_host=local,
                family=socket.AF_INET6 if ":" in local else socket.AF_INET,
                passive_ports=config.data.passive_ports,
                accept_timeout=config.data.accept_timeout,
                data_timeout=config.data.timeout,
                client_key=self.client_key,
                share=services.passive_share,
                on_expired=self._passive_expired,
                proxies=services.proxies,
                on_handshake=services.count_tls,
            )
        return data

    @property
    def data_connection(self) -> DataConnection | None:
        """The open data connection, if any, without building a channel to ask."""
        data = self._data
        return data.connection if data is not None else None

    @property
    def origin(self) -> Origin:
        origin = self._origin
        user = self.account.name if self.account is not None else None
        if origin.user != user:  # logged in or out since the last event
            origin = self._origin = Origin(self.id, self.peer_host, user)
        return origin

    @property
    def observed(self) -> bool:
        return self._dispatcher.active

    def wants(self, kind: type[seen.SessionEvent]) -> bool:
        return self._dispatcher.wants(kind)

    @property
    def transfer_running(self) -> bool:
        task = self.transfer_task
        return task is not None and not task.done()

    def require(self, letter: str, path: str) -> Storage:
        """The user's storage, if the account may do ``letter`` at ``path``."""
        if self.account is None or self.storage is None:  # the core prevents this
            raise PermissionDenied("Not logged in")
        if not self.account.permits(letter, path):
            raise PermissionDenied("Permission denied.")
        return self.storage

    def reply(self, reply: Reply, event: events.Event | None = None) -> None:
        """Send ``reply`` (answering ``event``, if given) on the control connection."""
        transport = self._transport
        if transport.is_closing():
            return
        transport.write(self.session.send(reply, event))

    def emit(self, event: seen.SessionEvent) -> None:
        """Hand ``event`` to the observers, after this turn of the event loop."""
        self._dispatcher.emit(event)

    async def wait_transfer(self) -> None:
        task = self.transfer_task
        if task is not None and not task.done():
            await asyncio.wait({task})

    async def start_tls(self) -> bool:
        """Upgrade the control connection after the 234; False if it must close."""
        tls = self.services.tls
        assert tls is not None  # the core refuses AUTH without TLS set up
        try:
            await self.writer.drain()
        except (OSError, ConnectionError):
            return False
        if _take_buffered(self.reader):
            # Clear text sent behind AUTH (command injection): never let it pass as protected.
            self.emit(seen.TLSRefused(self.origin, "clear text after AUTH"))
            return False
        context = tls.context
        try:
            await self.writer.start_tls(
                context, ssl_handshake_timeout=self.config.data.accept_timeout
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            self.emit(seen.TLSFailed(self.origin, type(exc).__name__))
            return False
        self.tls_context = context
        self._transport = self.writer.transport
        version = self.writer.get_extra_info("ssl_object").version()
        self.emit(seen.TLSEstablished(self.origin, version))
        return True

    def _passive_expired(self, port: int) -> None:
        self.emit(seen.PassiveListenerExpired(self.origin, port))

    # --- the loop ---------------------------------------------------------------

    async def run(self) -> None:
        cfg = self.config
        self.reply(Reply(220, cfg.banner))
        self.emit(seen.SessionOpened(self.origin))
        read: asyncio.Task[bytes] | None = None
        self.login_deadline = time.monotonic() + cfg.limits.sessions.login_timeout
        self._task = asyncio.current_task()
        self._loop = asyncio.get_running_loop()
        try:
            while not self.closing:
                if self.draining and not self.transfer_running:
                    self.reply(Reply(421, self.farewell))
                    break
                event = self.session.next_event()
                if event is not events.NEED_DATA:
                    pause = self.rate.delay()
                    if pause:  # a flood of commands slows this client, not the server
                        await asyncio.sleep(pause)
                    if type(event) is events.Answer and self.account is not None:
                        # What the core answered by itself (NOOP, TYPE...), without
                        # a coroutine for dispatch: the commonest command of all.
                        reply = event.reply
                        self.reply(reply)
                        if reply.code == 421:
                            self.closing = True
                        code: int | None = reply.code
                    else:
                        code = await self.dispatch(event)
                    if code is not None and self._count_commands:
                        self._command_done(code)
                    transport = self._transport
                    if transport.is_closing() or transport.get_write_buffer_size():
                        await self._drain()
                    continue
                if read is None and self.transfer_task is None:
                    # The common case, no transfer running: await the read
                    # directly under the deadline, without a Task and a wait
                    # set per command (a tenth of a login's CPU).
                    data = await self._read_idle(cfg.limits.sessions.idle_timeout)
                    if data is None:
                        break
                    self.session.receive_data(data)
                    continue
                if read is None:
                    read = asyncio.ensure_future(self.reader.read(_READ_SIZE))
                waits: set[asyncio.Future[object]] = {read}  # type: ignore[arg-type]
                if self.transfer_task is not None:
                    waits.add(self.transfer_task)  # type: ignore[arg-type]
                timeout = None if self.transfer_task else cfg.limits.sessions.idle_timeout
                self._parked = self.transfer_task is None
                if self._parked:  # idle behind a read left from a transfer (not per command)
                    self.idle_since = time.monotonic()
                if self.account is None:
                    # An absolute deadline: trickling bytes cannot keep a
                    # connection that never logs in alive.
                    left = self.login_deadline - time.monotonic()
                    timeout = max(0.0, min(cfg.limits.sessions.idle_timeout, left))
                done, _ = await asyncio.wait(
                    waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                self._parked = False
                if not done:
                    self._timed_out()
                    break
                if self.transfer_task is not None and self.transfer_task.done():
                    self.transfer_task = None
                if read in done:
                    try:
                        data = read.result()
                    except (ConnectionError, OSError):
                        data = b""
                    read = None
                    self.session.receive_data(data)
        except asyncio.CancelledError:
            self.reply(Reply(421, self.farewell))
            raise
        finally:
            if read is not None:
                read.cancel()
            await self.shutdown()

    def _command_done(self, code: int) -> None:
        """Tell whoever counts commands (only called when someone does)."""
        verb = self.session.verb
        dispatcher = self._dispatcher
        for count in dispatcher.command_counters:
            count(verb, code)
        if dispatcher.command_events:
            self.emit(seen.CommandCompleted(self.origin, verb, code))

    async def _read_idle(self, idle_timeout: float) -> bytes | None:
        """The next bytes from the client (b"" at EOF); None after a 421 for a timeout.

        The deadline is watched by one timer per session (:meth:`_watch`),
        re-armed only when it fires early or must fire sooner: arming and
        cancelling an ``asyncio.timeout`` around every read was a tenth of
        the CPU of a NOOP.
        """
        timeout = idle_timeout
        if self.account is None:
            # An absolute deadline: trickling bytes cannot keep a
            # connection that never logs in alive.
            timeout = max(0.0, min(idle_timeout, self.login_deadline - time.monotonic()))
        if timeout <= 0.0:
            data = _take_buffered(self.reader)  # what already arrived still counts
            if data:
                return data
            self._timed_out()
            return None
        loop = self._loop
        assert loop is not None  # set by ``run``, the only caller
        due = self._read_due = loop.time() + timeout
        self._read_span = timeout
        watchdog = self._watchdog
        if watchdog is None or due < watchdog.when():
            if watchdog is not None:
                watchdog.cancel()
            self._watchdog = loop.call_at(due, self._watch)
        self._parked = True
        try:
            return await self.reader.read(_READ_SIZE)
        except asyncio.CancelledError:
            if not self._expired:
                raise  # a drain or a shutdown: ``run`` answers it
            self._expired = False
            task = self._task
            if task is not None:
                task.uncancel()
            self._timed_out()
            return None
        except (ConnectionError, OSError):
            return b""
        finally:
            self._parked = False
            self._read_due = None

    def _watch(self) -> None:
        """The watchdog fired: end a read past its deadline, or wait for the next one."""
        self._watchdog = None
        due = self._read_due
        if due is None or self._task is None or self.closing:
            return  # not reading: the next read arms it again
        loop = self._loop
        assert loop is not None  # armed by ``_read_idle``, from ``run``
        # The loop may run a timer up to its clock resolution early.
        if due - loop.time() > 0.01:
            self._watchdog = loop.call_at(due, self._watch)
            return
        self._expired = True
        self._task.cancel()

    def _timed_out(self) -> None:
        if self.account is not None:
            self.reply(Reply(421, "Idle timeout, closing control connection."))
            self.emit(seen.IdleTimeout(self.origin))
        else:
            self.reply(Reply(421, "Login timeout, closing control connection."))
            self.emit(seen.LoginTimeout(self.origin))

    async def _drain(self) -> None:
        transport = self._transport
        if not transport.is_closing() and transport.get_write_buffer_size() == 0:
            return  # the reply is already in the kernel: nothing to wait for
        try:
            async with asyncio.timeout(self.config.limits.sessions.idle_timeout):
                await self.writer.drain()
        except (TimeoutError, ConnectionError, OSError):
            self.closing = True

    async def dispatch(self, event: events.Event) -> int | None:
        """Run ``event``; the code of the final reply it got here, if any.

        ``None``: no reply yet (a transfer answers from its task) or none at
        all (the connection is closing).
        """
        if self.account is None and type(event) is not events.ConnectionClosed:
            # Banned since it connected (guesses on its other connections):
            # nothing more before a login, USER and PASS included.
            banned = ban_refusal(self)
            if banned is not None:
                self.reply(banned, None if type(event) is events.Answer else event)
                return banned.code
        if type(event) is events.Answer:  # the core answered by itself
            self.reply(event.reply)
            if event.reply.code == 421:
                self.closing = True
            return event.reply.code
        handler = HANDLERS.get(type(event))
        if handler is None:  # pragma: no cover - every event type has a handler
            self.reply(Reply(502, "Command not implemented."), event)
            return 502
        try:
            outcome = await handler(self, event)
        except StorageError as exc:
            if self._dispatcher.detailed:
                error, code = type(exc).__name__, exc.reply_code
                self.emit(seen.StorageFailed(self.origin, self.session.verb, error, code))
            self.reply(Reply(exc.reply_code, exc.message), event)
            return exc.reply_code
        except LockLost:  # a worker died inside the shared limits: no traceback, retry later
            log.warning("session=%d: the shared limits are locked by a dead worker", self.id)
            self.reply(Reply(451, "Server busy; try again later."), event)
            return 451
        except Exception:
            log.exception("session=%d handler for %r failed", self.id, event)
            self.reply(Reply(451, "Internal error; the action was not taken."), event)
            return 451
        if outcome is None:
            return None
        if type(outcome) is Reply:
            self.reply(outcome, event)
            return outcome.code
        assert isinstance(outcome, transfers.Job) and isinstance(event, events.Transfer)
        self.transfer_job = outcome
        self.transfer_task = transfers.start(self, event, outcome)
        return None

    async def stop_transfer(self) -> None:
        """Abort a running transfer and wait until its task has cleaned up."""
        task = self.transfer_task
        if task is None or task.done():
            return
        self.aborting = True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.aborting = False
        self.transfer_task = None
        if self.transfer_job is not None:
            await transfers.abandon(self, self.transfer_job, answer=True)

    def drain(self) -> None:
        """The server is shutting down: 421 and close now if idle, else once the
        running transfer (or command) is over; nothing new starts meanwhile."""
        self.draining = True
        if self._parked and not self.transfer_running and self._task is not None:
            # Parked in a read: wake it the cheap way; ``run`` answers the
            # cancellation with the 421 and releases everything.
            self._task.cancel()

    def abort_for_shutdown(self) -> None:
        """The grace is over: a running transfer ends with 426 (an upload is
        discarded), then the session says 421 and closes."""
        self.draining = True
        task = self.transfer_task
        if task is not None and not task.done():
            self.aborting = True
            task.cancel()
        elif self._parked and self._task is not None:
            self._task.cancel()

    def kick(self, farewell: str) -> None:
        """An administrator ends this session: a running transfer ends with 426
        (an upload is discarded, nothing appears under its name), then 421
        ``farewell`` and the connection closes."""
        self.farewell = farewell
        self.abort_for_shutdown()

    async def shutdown(self) -> None:
        """Release everything this connection holds; safe on every path out."""
        task = self.transfer_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.transfer_job is not None:
            await transfers.abandon(self, self.transfer_job, answer=False)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._data is not None:
            self._data.close()
        if self.lease is not None:
            self.lease.release()
        with contextlib.suppress(Exception):
            self.writer.close()
        self.emit(seen.SessionClosed(self.origin))


def _take_buffered(reader: asyncio.StreamReader) -> bytes:
    """The bytes ``reader`` already holds, without waiting or yielding to the loop.

    asyncio offers no public "how much is buffered?". This runs one step of
    an ordinary ``read``: with bytes (or EOF) buffered it returns at once,
    and that step finishes; otherwise it would wait, and closing it there
    leaves the stream as it was. No loop turn happens in between, so bytes
    the client sends later (a TLS ClientHello) are not mistaken for ones
    that were already waiting.
    """
    step = reader.read(_READ_SIZE)
    try:
        step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except Exception:  # the stream failed: nothing waits in it
        return b""
    step.close()
    return b""
