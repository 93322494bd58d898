"""RETR, STOR/APPE/STOU and LIST/NLST/MLSD: everything that uses the data channel.

Each transfer is checked and opened on the control loop first, so that a
missing file or a refused permission is answered 550 *before* any 150. The
data phase then runs as a task of its own (see ``ControlConnection``) so that
ABOR and STAT are heard while bytes flow. Uploads go through the storage's
``Upload``: committed only after a clean end of stream, aborted on anything
else, so an interrupted STOR never leaves a file that looks whole.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import secrets
import time
from typing import TYPE_CHECKING

from fileferry import paths
from fileferry.errors import (
    AlreadyExists,
    NotFound,
    StorageError,
)
from fileferry.protocol import events
from fileferry.protocol.replies import Reply
from fileferry.server.datachannel import DataConnection, DataConnectionError

if TYPE_CHECKING:
    from fileferry.server.control import ControlConnection
    from fileferry.server.datapath import DataPaths
    from fileferry.server.throttle import Throttle
    from fileferry.storage.base import Capabilities, Reader, Storage, Upload

log = logging.getLogger("fileferry.transfer")


class Job(abc.ABC):
    """The data phase of one transfer; the runner handles replies and cleanup."""

    #: Text of the 150 reply.
    opening: str
    #: The transfer event this job answers; set by :func:`start`.
    event: events.Transfer | None = None
    #: Whether the task began running (a task cancelled first never does).
    started: bool = False

    @abc.abstractmethod
    async def run(self, dc: DataConnection) -> None:
        """Move the bytes."""

    async def end_stream(self, dc: DataConnection) -> None:
        """End the data stream cleanly (under TLS: our close_notify)."""
        await dc.finish()

    async def finish(self) -> str:
        """After a clean end of the data phase: commit; returns the 226 text."""
        return "Transfer complete."

    @abc.abstractmethod
    async def discard(self) -> None:
        """After a failure or an abort: release and roll back. Must not raise."""


class SendFile(Job):
    def __init__(
        self,
        reader: Reader,
        ascii: bool,
        throttle: Throttle | None,
        datapaths: DataPaths,
        caps: Capabilities,
    ) -> None:
        self.reader = reader
        self.ascii = ascii
        self.throttle = throttle
        self.datapaths = datapaths
        self.caps = caps
        mode = "ASCII" if ascii else "BINARY"
        # No file name here: it may not be UTF-8, and this is only information.
        self.opening = f"Opening {mode} mode data connection ({reader.size} bytes)."

    async def run(self, dc: DataConnection) -> None:
        await self.datapaths.send(
            dc, self.reader, self.caps, ascii=self.ascii, throttle=self.throttle
        )

    async def finish(self) -> str:
        await self.reader.close()
        return "Transfer complete."

    async def discard(self) -> None:
        await self.reader.close()


class ReceiveFile(Job):
    def __init__(
        self,
        upload: Upload,
        ascii: bool,
        path: str,
        unique: bool,
        throttle: Throttle | None,
        datapaths: DataPaths,
        caps: Capabilities,
    ) -> None:
        self.upload = upload
        self.ascii = ascii
        self.path = path
        self.throttle = throttle
        self.datapaths = datapaths
        self.caps = caps
        mode = "ASCII" if ascii else "BINARY"
        self.opening = (
            f"FILE: {paths.split(path)[1]}" if unique else f"Opening {mode} mode data connection."
        )

    async def run(self, dc: DataConnection) -> None:
        await self.datapaths.receive(
            dc, self.upload, self.caps, ascii=self.ascii, throttle=self.throttle
        )

    async def end_stream(self, dc: DataConnection) -> None:
        # Every byte and the client's end of stream (close_notify under TLS)
        # are in: a client that hangs up before reading our close_notify must
        # not cost it the upload.
        with contextlib.suppress(DataConnectionError):
            await dc.finish()

    async def finish(self) -> str:
        await self.upload.commit()
        return "Transfer complete."

    async def discard(self) -> None:
        try:
            await self.upload.abort()
        except StorageError:
            log.warning("could not discard a failed upload to %s", self.path)


def start(conn: ControlConnection, ev: events.Transfer, job: Job, what: str) -> None:
    """Run ``job``'s data phase as the session's transfer task."""
    job.event = ev
    conn.transfer_job = job
    conn.transfer_task = asyncio.get_running_loop().create_task(_run(conn, ev, job, what))


async def abandon(conn: ControlConnection, job: Job, *, answer: bool) -> None:
    """Clean up a transfer whose task was cancelled before it ever ran.

    (An ABOR in the same packet as the RETR can do that.) The job's open
    file or pending upload must still be released, and the transfer still
    needs its final reply, or the session would wait for it forever.
    """
    if job.started:
        return
    job.started = True
    await job.discard()
    conn.data.close()
    if answer and job.event is not None:
        conn.reply(Reply(426, "Transfer aborted."), job.event)


async def _run(conn: ControlConnection, ev: events.Transfer, job: Job, what: str) -> None:
    job.started = True
    started = time.monotonic()
    dc: DataConnection | None = None
    result = 451
    try:
        conn.reply(Reply(150, job.opening), ev)
        try:
            dc = await conn.data.connect(
                conn.tls_context if conn.session.state.prot_private else None,
                require_reuse=conn.app.config.tls_session_reuse,
            )
        except DataConnectionError as exc:
            await job.discard()
            result = 425
            conn.log_event("data-connection-failed", reason=str(exc))
            conn.reply(Reply(425, f"Cannot open data connection: {exc}."), ev)
            return
        await job.run(dc)
        await job.end_stream(dc)
        conn.data.connection = None
        dc.close()
        text = await job.finish()
        result = 226
        conn.reply(Reply(226, text), ev)
    except asyncio.CancelledError:
        await job.discard()
        conn.data.close()
        if not conn.aborting:
            raise
        result = 426
        conn.reply(Reply(426, "Transfer aborted."), ev)
    except DataConnectionError as exc:
        await job.discard()
        conn.data.close()
        result = 426
        conn.reply(Reply(426, f"Connection closed; transfer aborted ({exc})."), ev)
    except StorageError as exc:
        await job.discard()
        conn.data.close()
        result = exc.reply_code
        conn.reply(Reply(exc.reply_code, exc.message), ev)
    except Exception:
        log.exception("session=%d transfer failed", conn.id)
        await job.discard()
        conn.data.close()
        conn.reply(Reply(451, "Internal error; transfer aborted."), ev)
    finally:
        conn.log_event(
            "transfer",
            cmd=what,
            path=getattr(ev, "path", ""),
            bytes=dc.bytes if dc else 0,
            secs=round(time.monotonic() - started, 3),
            result=result,
        )


# --- the handlers ------------------------------------------------------------------


async def retrieve(conn: ControlConnection, ev: events.RetrieveFile) -> None:
    storage = conn.require("r", ev.path)
    reader = await storage.open_read(ev.path, ev.offset)
    throttle = conn.lease.download if conn.lease is not None else None
    job = SendFile(reader, ev.ascii, throttle, conn.app.data_paths, storage.capabilities)
    start(conn, ev, job, "RETR")


async def store(conn: ControlConnection, ev: events.StoreFile) -> None:
    if ev.mode is events.StoreMode.UNIQUE:
        storage = conn.require("w", ev.path)
        target = await _unique_target(storage, ev.path)
    else:
        letter = "a" if ev.mode is events.StoreMode.APPEND else "w"
        storage = conn.require(letter, ev.path)
        target = ev.path
    upload = await storage.open_write(
        target,
        ev.offset,
        append=ev.mode is events.StoreMode.APPEND,
        exclusive=ev.mode is events.StoreMode.UNIQUE,
    )
    throttle = conn.lease.upload if conn.lease is not None else None
    unique = ev.mode is events.StoreMode.UNIQUE
    datapaths, caps = conn.app.data_paths, storage.capabilities
    job = ReceiveFile(upload, ev.ascii, target, unique, throttle, datapaths, caps)
    start(conn, ev, job, ev.mode.value)


async def _unique_target(storage: Storage, path: str) -> str:
    """A free name for STOU: ``path`` itself if free, else with a random suffix."""
    base = path
    try:
        info = await storage.stat(path)
    except NotFound:
        return path
    if info.is_dir:
        base = paths.join(path, "stou")
    for _ in range(16):
        candidate = f"{base}.{secrets.token_hex(4)}"
        try:
            await storage.stat(candidate)
        except NotFound:
            return candidate
    raise AlreadyExists("Could not find a unique name.")


HANDLERS = {
    events.RetrieveFile: retrieve,
    events.StoreFile: store,
}
