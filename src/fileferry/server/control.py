"""One control connection: read lines, feed the core, run its events.

The loop is deliberately small: wait for bytes from the client (or for a
running transfer to finish), hand them to the sans-I/O session, and dispatch
each event it produces through the handler table. Transfers run as a task of
their own so that ABOR, STAT and QUIT are heard while data flows; every
other event is handled in line, which keeps replies in order.
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
from fileferry.limits.throttle import CommandRate
from fileferry.protocol import events
from fileferry.protocol.replies import Reply
from fileferry.protocol.session import Session
from fileferry.server.datachannel import DataChannel
from fileferry.server.handlers import HANDLERS, transfers

if TYPE_CHECKING:
    from fileferry.server.accounts import Lease
    from fileferry.server.app import App
    from fileferry.storage.base import Storage
    from fileferry.users.base import Account

log = logging.getLogger("fileferry.session")

_READ_SIZE = 16384
_EVENT = "session=%d peer=%s user=%s %s %s"
_ids = itertools.count(1)


class ControlConnection:
    """Everything the server keeps for one client."""

    def __init__(
        self,
        app: App,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.app = app
        self._loop = asyncio.get_running_loop()
        self.id = next(_ids)
        self.reader = reader
        self.writer = writer
        #: The TLS context of this session's control connection; its data
        #: connections use the same one so that they can resume its session.
        self.tls_context = tls_context
        self.session = Session(app.core_config, implicit_tls=tls_context is not None)
        self.rate = CommandRate(app.config.max_commands_per_second)
        self.login_deadline = time.monotonic() + app.config.login_timeout
        self.client_key = client_key(writer.get_extra_info("peername")[0])
        sock: socket.socket = writer.get_extra_info("socket")
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        self.peer_host: str = peer[0]
        self.local_host: str = local[0]
        self.account: Account | None = None
        self.storage: Storage | None = None
        #: The logged-in account's share of limits (throttles, quota, session slot).
        self.lease: Lease | None = None
        self.data = DataChannel(
            peer_host=self.peer_host,
            local_host=self.local_host,
            family=sock.family,
            passive_ports=app.config.passive_ports,
            accept_timeout=app.config.accept_timeout,
            data_timeout=app.config.data_timeout,
        )
        self.transfer_task: asyncio.Task[None] | None = None
        self.transfer_job: transfers.Job | None = None
        #: Set by ABOR so the transfer task answers 426 instead of re-raising.
        self.aborting = False
        self.closing = False

    def require(self, letter: str, path: str) -> Storage:
        """The user's storage, if the account may do ``letter`` at ``path``."""
        if self.account is None or self.storage is None:  # the core prevents this
            raise PermissionDenied("Not logged in")
        if not self.account.permits(letter, path):
            raise PermissionDenied("Permission denied.")
        return self.storage

    # --- replies --------------------------------------------------------------

    def reply(self, reply: Reply, event: events.Event | None = None) -> None:
        """Send ``reply`` (answering ``event``, if given) on the control connection."""
        if self.writer.is_closing():
            return
        self.writer.write(self.session.send(reply, event))

    def log_event(self, what: str, **fields: object) -> None:
        """Log one session event, written after this turn of the event loop.

        The record (and so its timestamp, user and fields) is made now; only
        formatting and writing it wait until the replies and closes that this
        turn of the loop produces have gone out. When 300 clients QUIT at
        once, the last one's connection would otherwise close only after 299
        log lines: a fifth of the burst's time. Session events keep their
        order; a warning logged directly in the same turn may print first.
        """
        if not log.isEnabledFor(logging.INFO):
            return
        extra = " ".join(f"{k}={v!r}" for k, v in fields.items())
        user = self.account.name if self.account else "-"
        args = (self.id, self.peer_host, user, what, extra)
        record = log.makeRecord(log.name, logging.INFO, "(unknown file)", 0, _EVENT, args, None)
        try:
            self._loop.call_soon(log.handle, record)
        except RuntimeError:  # the loop is closed: write it now rather than lose it
            log.handle(record)

    # --- the loop ---------------------------------------------------------------

    async def run(self) -> None:
        cfg = self.app.config
        self.reply(Reply(220, cfg.banner))
        self.log_event("connect")
        read: asyncio.Task[bytes] | None = None
        self.login_deadline = time.monotonic() + cfg.login_timeout
        try:
            while not self.closing:
                event = self.session.next_event()
                if event is not events.NEED_DATA:
                    pause = self.rate.delay()
                    if pause:  # a flood of commands slows this client, not the server
                        await asyncio.sleep(pause)
                    await self.dispatch(event)
                    await self._drain()
                    continue
                if read is None and self.transfer_task is None:
                    # The common case, no transfer running: await the read
                    # directly under the deadline, without a Task and a wait
                    # set per command (a tenth of a login's CPU).
                    data = await self._read_idle(cfg.idle_timeout)
                    if data is None:
                        break
                    self.session.receive_data(data)
                    continue
                if read is None:
                    read = asyncio.ensure_future(self.reader.read(_READ_SIZE))
                waits: set[asyncio.Future[object]] = {read}  # type: ignore[arg-type]
                if self.transfer_task is not None:
                    waits.add(self.transfer_task)  # type: ignore[arg-type]
                timeout = None if self.transfer_task else cfg.idle_timeout
                if self.account is None:
                    # An absolute deadline: trickling bytes cannot keep a
                    # connection that never logs in alive.
                    left = self.login_deadline - time.monotonic()
                    timeout = max(0.0, min(cfg.idle_timeout, left))
                done, _ = await asyncio.wait(
                    waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    what = "Idle" if self.account else "Login"
                    self.reply(Reply(421, f"{what} timeout, closing control connection."))
                    self.log_event(f"{what.lower()}-timeout")
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
            self.reply(Reply(421, "Server shutting down."))
            raise
        finally:
            if read is not None:
                read.cancel()
            await self.shutdown()

    async def _read_idle(self, idle_timeout: float) -> bytes | None:
        """The next bytes from the client (b"" at EOF); None after a 421 for a timeout."""
        timeout = idle_timeout
        if self.account is None:
            # An absolute deadline: trickling bytes cannot keep a
            # connection that never logs in alive.
            timeout = max(0.0, min(idle_timeout, self.login_deadline - time.monotonic()))
        try:
            async with asyncio.timeout(timeout):
                return await self.reader.read(_READ_SIZE)
        except TimeoutError:
            what = "Idle" if self.account else "Login"
            self.reply(Reply(421, f"{what} timeout, closing control connection."))
            self.log_event(f"{what.lower()}-timeout")
            return None
        except (ConnectionError, OSError):
            return b""

    async def _drain(self) -> None:
        transport = self.writer.transport
        if not transport.is_closing() and transport.get_write_buffer_size() == 0:
            return  # the reply is already in the kernel: nothing to wait for
        try:
            async with asyncio.timeout(self.app.config.idle_timeout):
                await self.writer.drain()
        except (TimeoutError, ConnectionError, OSError):
            self.closing = True

    async def dispatch(self, event: events.Event) -> None:
        handler = HANDLERS.get(type(event))
        if handler is None:  # pragma: no cover - every event type has a handler
            self.reply(Reply(502, "Command not implemented."), event)
            return
        try:
            await handler(self, event)
        except StorageError as exc:
            self.reply(Reply(exc.reply_code, exc.message), event)
        except Exception:
            log.exception("session=%d handler for %r failed", self.id, event)
            self.reply(Reply(451, "Internal error; the action was not taken."), event)

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

    async def shutdown(self) -> None:
        """Release everything this connection holds; safe on every path out."""
        task = self.transfer_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.transfer_job is not None:
            await transfers.abandon(self, self.transfer_job, answer=False)
        self.data.close()
        if self.lease is not None:
            self.lease.release()
        with contextlib.suppress(Exception):
            self.writer.close()
        self.log_event("disconnect")
