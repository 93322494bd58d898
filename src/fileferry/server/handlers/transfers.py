"""RETR, STOR/APPE/STOU and LIST/NLST/MLSD: everything that uses the data channel.

Each transfer is checked and opened on the control loop first, so that a
missing file or a refused permission is answered 550 *before* any 150. The
data phase then runs as a task of its own (see ``ControlConnection``) so that
ABOR and STAT are heard while bytes flow. Uploads go through the storage's
``Upload``: committed only after a clean end of stream, aborted on anything
else, so an interrupted STOR never leaves a file that looks whole.

An upload hook with ``before_reply`` (an operator's virus scan) runs after
the commit and before the 226: the file must be whole to be judged. If it
refuses, the file is removed again (through the session's storage, so a
quota gives the bytes back) and the client gets 550 with the hook's reason:
nothing refused stays behind as if accepted. While the check runs, the file
is under its name; it is accepted only when the 226 says so.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
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
from fileferry.protocol.commands import permission
from fileferry.protocol.replies import Reply
from fileferry.server.dataconn import DataConnection, DataConnectionError
from fileferry.server.datapath.run import drain_after_refusal

if TYPE_CHECKING:
    from fileferry.limits.throttle import Throttle
    from fileferry.observability.events import Origin
    from fileferry.server.context import Handler, SessionContext, UploadGate
    from fileferry.server.datapath import DataPaths
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
    #: The verb, for the TransferFinished event; set by the handler.
    command: str = ""
    #: ``"download"`` (server to client) or ``"upload"``.
    direction: str = "download"
    #: How the bytes moved (``sendfile``, ``splice``, ``tls-pump``, ``loop``...),
    #: once :meth:`run` knows; for the TransferFinished event.
    data_path: str = ""

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

    async def after_refusal(self, dc: DataConnection) -> None:  # noqa: B027 - optional hook
        """After the 552 of a quota refusal went out, before the data connection closes."""


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
        route = await self.datapaths.send(
            dc, self.reader, self.caps, ascii=self.ascii, throttle=self.throttle
        )
        self.data_path = route.value

    async def finish(self) -> str:
        await self.reader.close()
        return "Transfer complete."

    async def discard(self) -> None:
        await self.reader.close()


class UploadRefused(StorageError):
    """A ``before_reply`` hook said no; ``message`` is its reason, already made safe."""

    reply_code = 550


class ReceiveFile(Job):
    direction = "upload"
    #: Set by :func:`store` when someone listens or a hook checks uploads.
    origin: Origin | None = None
    storage: Storage | None = None
    gate: UploadGate | None = None
    #: The committed and accepted upload, for the observers (after the 226).
    uploaded: seen.FileUploaded | None = None
    #: Committed: there is nothing left to abort.
    committed: bool = False

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
        route = await self.datapaths.receive(
            dc, self.upload, self.caps, ascii=self.ascii, throttle=self.throttle
        )
        self.data_path = route.value

    async def end_stream(self, dc: DataConnection) -> None:
        # Every byte and the client's end of stream (close_notify under TLS)
        # are in: a client that hangs up before reading our close_notify must
        # not cost it the upload.
        with contextlib.suppress(DataConnectionError):
            await dc.finish()

    async def finish(self) -> str:
        info = await self.upload.commit()
        self.committed = True
        if self.origin is not None and self.storage is not None:
            self.uploaded = seen.FileUploaded(
                self.origin, self.command, self.path, info.size, self.storage.local_path(self.path)
            )
            if self.gate is not None:
                refusal = await self._check(self.gate, self.uploaded)
                if refusal is not None:
                    self.uploaded = None
                    await self._withdraw()
                    raise UploadRefused(refusal)
        return "Transfer complete."

    async def _check(self, gate: UploadGate, uploaded: seen.FileUploaded) -> str | None:
        """The gate's verdict; a check that breaks or is cut short never accepts."""
        try:
            return await gate(uploaded)
        except asyncio.CancelledError:  # ABOR or shutdown: the client hears 426, not 226
            self.uploaded = None
            await self._withdraw()
            raise
        except Exception:
            log.exception("the upload check of %r failed", self.path)
            return "The upload check failed."

    async def _withdraw(self) -> None:
        """Remove a committed upload a hook refused."""
        assert self.storage is not None
        try:
            await self.storage.remove(self.path)
        except StorageError as exc:
            log.error("could not remove the refused upload %r: %s", self.path, exc.message)

    async def discard(self) -> None:
        if self.committed:  # accepted, or refused and withdrawn: nothing to roll back
            return
        try:
            await self.upload.abort()
        except StorageError:
            log.warning("could not discard a failed upload to %s", self.path)

    async def after_refusal(self, dc: DataConnection) -> None:
        await drain_after_refusal(dc)


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
    except QuotaExceeded as exc:
        # Answer at once, then stop: the client must not send the rest of a
        # refused file first (a brief drain lets one that overshot a little
        # read the reply instead of a reset).
        # The session's data channel is released BEFORE the 552: once the
        # client reads it, it may send PASV and STOR at once, and a close
        # after the drain would then shut the listener (or connection) of
        # that next transfer. Only the refused connection itself is drained.
        await job.discard()
        drain = dc is not None and ctx.data.connection is dc  # not after a commit's refusal
        if drain:
            ctx.data.connection = None
        ctx.data.close()
        result = exc.reply_code
        _storage_failed(ctx, job, exc)
        ctx.reply(Reply(exc.reply_code, exc.message), ev)
        if drain:
            assert dc is not None
            try:
                await job.after_refusal(dc)
            finally:
                dc.close(graceful=False)
    except StorageError as exc:
        await job.discard()
        ctx.data.close()
        result = exc.reply_code
        _storage_failed(ctx, job, exc)
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
                job.data_path,
                ascii=getattr(job, "ascii", False),
            )
        )
        if result == 226 and isinstance(job, ReceiveFile) and job.uploaded is not None:
            ctx.emit(job.uploaded)


def _storage_failed(ctx: SessionContext, job: Job, exc: StorageError) -> None:
    ctx.emit(seen.StorageFailed(ctx.origin, job.command, type(exc).__name__, exc.reply_code))


# --- the handlers ------------------------------------------------------------------


_RETR = permission("RETR")
#: STOR, APPE and STOU each have their own letter in the command table.
_STORE = {mode: permission(mode.value) for mode in events.StoreMode}


async def retrieve(ctx: SessionContext, ev: events.RetrieveFile) -> Job:
    storage = ctx.require(_RETR, ev.path)
    reader = await storage.open_read(ev.path, ev.offset)
    throttle = ctx.lease.download if ctx.lease is not None else None
    job = SendFile(reader, ev.ascii, throttle, ctx.services.data_paths, storage.capabilities)
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
    datapaths, caps = ctx.services.data_paths, storage.capabilities
    job = ReceiveFile(upload, ev.ascii, target, unique, throttle, datapaths, caps)
    job.command = ev.mode.value
    gate = ctx.services.upload_gate
    if gate is not None or ctx.observed:
        job.origin, job.storage, job.gate = ctx.origin, storage, gate
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
        candidate = f"{base}.{os.urandom(4).hex()}"
        try:
            await storage.stat(candidate)
        except NotFound:
            return candidate
    raise AlreadyExists("Could not find a unique name.")


HANDLERS: dict[type[events.Event], Handler] = {
    events.RetrieveFile: retrieve,
    events.StoreFile: store,
}
