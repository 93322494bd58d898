"""HASH and the X* digest commands: read a file through the storage and digest it.

Digesting a large file is seconds of CPU, so it never runs on the event
loop: when the storage hands out a descriptor (local disk) the whole read
and digest loop is one hop to a worker thread (``pread`` plus ``update``,
both of which release the GIL); otherwise each chunk read from the storage
is digested in a thread. The read permission (``r``) is checked exactly as
for RETR, so HASH cannot reveal anything about a file that RETR would not.

A server-wide cap keeps many clients from tying up every worker thread with
digests; past it a client is told 450, which the draft defines as "busy,
try again later".
"""

from __future__ import annotations

import asyncio
import os
import weakref
from typing import TYPE_CHECKING

from fileferry.digests import Digest, new_digest
from fileferry.errors import InvalidOffset, StorageUnavailable
from fileferry.observability import events as seen
from fileferry.protocol import events
from fileferry.protocol.commands import permission
from fileferry.protocol.replies import Reply
from fileferry.storage.fastpaths import FileBacked

if TYPE_CHECKING:
    from fileferry.server.context import Handler, SessionContext
    from fileferry.storage.base import Reader

#: Bytes read per step; large enough that a thread hop per chunk costs nothing.
CHUNK = 1 << 20
#: Digests running at once per server (event loop); more are answered 450.
MAX_CONCURRENT = 8

_running: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = weakref.WeakKeyDictionary()


def _digest_fd(fd: int, start: int, count: int, digest: Digest) -> int:
    """Runs in a worker thread: positional reads leave the descriptor's offset alone."""
    done = 0
    while done < count:
        chunk = os.pread(fd, min(CHUNK, count - done), start + done)
        if not chunk:
            break
        digest.update(chunk)
        done += len(chunk)
    return done


async def _digest_reader(reader: Reader, start: int, count: int, digest: Digest) -> int:
    fd = reader.fileno() if isinstance(reader, FileBacked) else None
    if fd is not None:
        try:
            return await asyncio.to_thread(_digest_fd, fd, start, count, digest)
        except OSError as exc:
            raise StorageUnavailable() from exc
    done = 0
    while done < count:
        chunk = await reader.read(min(CHUNK, count - done))
        if not chunk:
            break
        await asyncio.to_thread(digest.update, chunk)
        done += len(chunk)
    return done


async def file_hash(ctx: SessionContext, ev: events.FileHash) -> Reply:
    storage = ctx.require(permission(ev.command), ev.path)
    info = await storage.stat(ev.path)
    draft = ev.command == "HASH"
    if info.is_dir:
        # The draft's code for "the hash of a directory is not defined".
        return Reply(553 if draft else 550, "Not a regular file.")
    end = info.size if ev.end is None else min(ev.end, info.size)
    if ev.start > end or (ev.start == end and ev.start > 0):
        raise InvalidOffset("Range starts past the end of the file.")
    loop = asyncio.get_running_loop()
    if _running.get(loop, 0) >= MAX_CONCURRENT:
        return Reply(450, "Busy computing other hashes; try again later.")
    _running[loop] = _running.get(loop, 0) + 1
    try:
        kept = None
        if ev.start == 0 and end == info.size:
            # A whole file whose digest the storage kept (an object fileferry uploaded).
            kept = await storage.stored_digest(ev.path, ev.algorithm)
        if kept is not None:
            hashed, hexdigest = info.size, kept
        else:
            digest = new_digest(ev.algorithm)
            reader = await storage.open_read(ev.path, ev.start)
            try:
                hashed = await _digest_reader(reader, ev.start, end - ev.start, digest)
            finally:
                await reader.close()
            hexdigest = digest.hexdigest()
    finally:
        _running[loop] -= 1
    ctx.emit(seen.FileHashed(ctx.origin, ev.path, ev.algorithm, hashed))
    if draft:
        last = ev.start + hashed - 1 if hashed else ev.start
        return Reply(213, f"{ev.algorithm} {ev.start}-{last} {hexdigest} {ev.path}")
    return Reply(250, hexdigest.upper())


HANDLERS: dict[type[events.Event], Handler] = {events.FileHash: file_hash}
