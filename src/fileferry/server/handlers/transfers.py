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
    QuotaExceeded,
    StorageError,
)
from fileferry.observability import events as seen
from fileferry.protocol import events
from fileferry.protocol.ascii import FromNetwork, ToNetwork
from fileferry.protocol.commands import permission
from fileferry.protocol.replies import Reply
from fileferry.server import tlspump, zerocopy
from fileferry.server.datachannel import DataConnection, DataConnectionError

if TYPE_CHECKING:
    from fileferry.limits.throttle import Throttle
    from fileferry.server.context import Handler, SessionContext
    from fileferry.storage.base import Reader, Storage, Upload

log = logging.getLogger("fileferry.transfer")

_READ_CHUNK = 1024 * 1024
_RECV_BUFFER = 256 * 1024
#: Bytes of a refused upload still read, so the client finishes and hears the 552.
_DRAIN_LIMIT = 16 * 1024 * 1024


class Job(abc.ABC):
    """The data phase of one transfer; the runner handles replies and cleanup."""

    #: Text of the 150 reply.
    opening: str
    #: The transfer event this job answers; set by :func:`start`.
    event: events.Transfer | None = None
    #: Whether the task began running (a task cancelled first never does).
    started: bool = False
    #: The verb, for the TransferFinished event; set by the handler.
    command: str = ""
    #: ``"download"`` (server to client) or ``"upload"``.
    direction: str = "download"

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
    def __init__(self, reader: Reader, ascii: bool, throttle: Throttle | None = None) -> None:
        self.reader = reader
        self.ascii = ascii
        self.throttle = throttle
        mode = "ASCII" if ascii else "BINARY"
        # No file name here: it may not be UTF-8, and this is only information.
        self.opening = f"Opening {mode} mode data connection ({reader.size} bytes)."

    async def run(self, dc: DataConnection) -> None:
        if self.throttle is not None:
            await self._run_throttled(dc, self.throttle)
            return
        reader = self.reader
        fd = reader.fileno()
        if fd is not None and not self.ascii and dc.zero_copy:
            await dc.sendfile(fd, reader.position, reader.size - reader.position)
            return
        if not self.ascii and await tlspump.send_file(dc, reader):
            return  # PROT P: encrypted and sent by a pump thread, beside the loop
        codec = ToNetwork() if self.ascii else None
        while chunk := await reader.read(_READ_CHUNK):
            await dc.sendall(codec.convert(chunk) if codec else chunk)

    async def _run_throttled(self, dc: DataConnection, throttle: Throttle) -> None:
        """The same, a throttle chunk at a time (``sendfile`` too), paced before each."""
        reader = self.reader
        step = throttle.chunk
        fd = reader.fileno()
        if fd is not None and not self.ascii and dc.zero_copy:
            position, end = reader.position, reader.size
            while position < end:
                n = min(step, end - position)
                await throttle.pace(n)
                sent = await dc.sendfile(fd, position, n)
                if sent == 0:
                    break  # the file shrank meanwhile
                position += sent
            return
        codec = ToNetwork() if self.ascii else None
        while chunk := await reader.read(step):
            data = codec.convert(chunk) if codec else chunk
            await throttle.pace(len(data))
            await dc.sendall(data)

    async def finish(self) -> str:
        await self.reader.close()
        return "Transfer complete."

    async def discard(self) -> None:
        await self.reader.close()


class ReceiveFile(Job):
    direction = "upload"

    def __init__(
        self,
        upload: Upload,
        ascii: bool,
        path: str,
        unique: bool,
        throttle: Throttle | None = None,
    ) -> None:
        self.upload = upload
        self.ascii = ascii
        self.path = path
        self.throttle = throttle
        mode = "ASCII" if ascii else "BINARY"
        self.opening = (
            f"FILE: {paths.split(path)[1]}" if unique else f"Opening {mode} mode data connection."
        )

    async def run(self, dc: DataConnection) -> None:
        codec = FromNetwork() if self.ascii else None
        upload = self.upload
        throttle = self.throttle
        try:
            if zerocopy.usable(dc, upload, ascii=self.ascii, throttled=throttle is not None):
                # Cleartext binary upload to local disk: the kernel moves the bytes.
                await zerocopy.receive(dc, upload)
                return
            if codec is None and throttle is None and await tlspump.receive(dc, upload):
                return  # PROT P: received and decrypted by a pump thread, beside the loop
            view = memoryview(bytearray(_RECV_BUFFER))
            if throttle is not None:
                # Small reads, each paced after it arrives: TCP then slows the sender.
                view = view[: throttle.chunk]
            while n := await dc.recv_into(view):
                if codec is not None:
                    await upload.write(codec.convert(bytes(view[:n])))
                else:
                    await upload.write(view[:n])
                if throttle is not None:
                    await throttle.pace(n)
            if codec is not None:
                await upload.write(codec.flush())
        except QuotaExceeded:
            await _drain_after_refusal(dc, memoryview(bytearray(_RECV_BUFFER)))
            raise

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


async def _drain_after_refusal(dc: DataConnection, view: memoryview) -> None:
    """Read and drop what the client still sends (up to a cap) after a refusal.

    Closing a socket with unread data resets it, and many clients (curl)
    then report "connection reset" and never read the 552 that says why.
    """
    left = _DRAIN_LIMIT
    with contextlib.suppress(DataConnectionError):
        while left > 0 and (n := await dc.recv_into(view)):
            left -= n


def start(ctx: SessionContext, ev: events.Transfer, job: Job) -> asyncio.Task[None]:
    """Run ``job``'s data phase as a task of its own; the shell keeps the task."""
    job.event = ev
    return asyncio.get_running_loop().create_task(_run(ctx, ev, job))


async def abandon(ctx: SessionContext, job: Job, *, answer: bool) -> None:
    """Clean up a transfer whose task was cancelled before it ever ran.

    (An ABOR in the same packet as the RETR can do that.) The job's open
    file or pending upload must still be released, and the transfer still
    needs its final reply, or the session would wait for it forever.
    """
    if job.started:
        return
    job.started = True
    await job.discard()
    ctx.data.close()
    if answer and job.event is not None:
        ctx.reply(Reply(426, "Transfer aborted."), job.event)


async def _run(ctx: SessionContext, ev: events.Transfer, job: Job) -> None:
    job.started = True
    started = time.monotonic()
    dc: DataConnection | None = None
    result = 451
    try:
        ctx.reply(Reply(150, job.opening), ev)
        try:
            dc = await ctx.data.connect(
                ctx.tls_context if ctx.state.prot_private else None,
                require_reuse=ctx.config.tls.session_reuse,
            )
        except DataConnectionError as exc:
            await job.discard()
            result = 425
            ctx.emit(seen.DataConnectionFailed(ctx.origin, str(exc)))
            ctx.reply(Reply(425, f"Cannot open data connection: {exc}."), ev)
            return
        await job.run(dc)
        await job.end_stream(dc)
        ctx.data.connection = None
        dc.close()
        text = await job.finish()
        result = 226
        ctx.reply(Reply(226, text), ev)
    except asyncio.CancelledError:
        await job.discard()
        ctx.data.close()
        if not ctx.aborting:
            raise
        result = 426
        ctx.reply(Reply(426, "Transfer aborted."), ev)
    except DataConnectionError as exc:
        await job.discard()
        ctx.data.close()
        result = 426
        ctx.reply(Reply(426, f"Connection closed; transfer aborted ({exc})."), ev)
    except StorageError as exc:
        await job.discard()
        ctx.data.close()
        result = exc.reply_code
        ctx.reply(Reply(exc.reply_code, exc.message), ev)
    except Exception:
        log.exception("session=%d transfer failed", ctx.id)
        await job.discard()
        ctx.data.close()
        ctx.reply(Reply(451, "Internal error; transfer aborted."), ev)
    finally:
        ctx.emit(
            seen.TransferFinished(
                ctx.origin,
                job.command,
                getattr(ev, "path", ""),
                job.direction,
                dc.bytes if dc else 0,
                time.monotonic() - started,
                result,
            )
        )


# --- the handlers ------------------------------------------------------------------


_RETR = permission("RETR")
#: STOR, APPE and STOU each have their own letter in the command table.
_STORE = {mode: permission(mode.value) for mode in events.StoreMode}


async def retrieve(ctx: SessionContext, ev: events.RetrieveFile) -> Job:
    reader = await ctx.require(_RETR, ev.path).open_read(ev.path, ev.offset)
    throttle = ctx.lease.download if ctx.lease is not None else None
    job = SendFile(reader, ev.ascii, throttle)
    job.command = "RETR"
    return job


async def store(ctx: SessionContext, ev: events.StoreFile) -> Job:
    storage = ctx.require(_STORE[ev.mode], ev.path)
    if ev.mode is events.StoreMode.UNIQUE:
        target = await _unique_target(storage, ev.path)
    else:
        target = ev.path
    upload = await storage.open_write(
        target,
        ev.offset,
        append=ev.mode is events.StoreMode.APPEND,
        exclusive=ev.mode is events.StoreMode.UNIQUE,
    )
    throttle = ctx.lease.upload if ctx.lease is not None else None
    unique = ev.mode is events.StoreMode.UNIQUE
    job = ReceiveFile(upload, ev.ascii, target, unique, throttle)
    job.command = ev.mode.value
    return job


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


HANDLERS: dict[type[events.Event], Handler] = {
    events.RetrieveFile: retrieve,
    events.StoreFile: store,
}
