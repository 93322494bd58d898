"""Streamed reads and multipart uploads of the S3 backend.

Reads: one GET per RETR, ranged from the REST offset, consumed as the data
connection drains it. obstore hands the body over in blocks of at least
:data:`READ_BLOCK` (the HTTP body is pulled only as we ask), so a transfer
holds two blocks at most whatever the object's size; closing the reader
drops the response, which closes its connection and stops the GET. A block
is sized to fit whole in one ``read`` of the data path, so it goes to the
socket as obstore made it: no slice, no copy.

Uploads: bytes are buffered up to one part (``s3parts.PART_SIZE``, S3's
minimum), received straight into the part's buffer on the cleartext data
path. An upload that ends within one part is one PUT (with ``If-None-Match: *`` for
STOU/no-clobber, and its SHA-256 in the object's metadata). A longer one
becomes a multipart upload fed through a bounded queue: at most one part
waits in the queue and :data:`PART_CONCURRENCY` are in flight, so memory
stays bounded and a slow store slows the client down instead of filling
RAM. Each part takes a place at its store's gate (``s3parts.UploadGate``)
until the store has answered it, and its buffer is reused after that
(``s3parts`` says how that moment is known); a part waiting for a place
stops the reading of its data connection, and TCP slows its client. The object appears only when the
multipart upload is completed, by ``commit``; ``abort`` makes the part
generator raise, on which obstore aborts the multipart upload, so no
pending upload is left behind. (Cancelling
obstore's task instead would drop it without the abort: never done here.)

The SHA-256 of every upload is computed as it streams. A single PUT carries
it in metadata; a multipart upload's is known only at its end, after its
metadata was fixed, so it is set as an object tag then (a small request, no
copy of the data). HASH reads either back instead of the object.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fileferry.errors import AlreadyExists, StorageError
from fileferry.storage.base import FileInfo, FileKind, Reader, Upload
from fileferry.storage.fastpaths import ReceivesInto
from fileferry.storage.s3parts import PART_SIZE, give_back, lend, spare_buffer, take_buffer
from fileferry.storage.s3paths import store_error, unique_of
from fileferry.storage.s3request import SharedPool

if TYPE_CHECKING:
    from fileferry.storage.s3 import S3Storage

#: What the data path (and HASH) asks ``read`` for at a time.
READ_SIZE = 1 << 20
#: The most hyper, obstore's HTTP client, reads from a connection at once (its
#: default read-buffer cap: 8 KiB + 400 KiB).
HTTP_READ_MAX = 8192 + 4096 * 100
#: Smallest block obstore hands over from a GET body (the last one may be shorter).
#: obstore joins the HTTP client's reads until it has this much, so a block is
#: under ``READ_BLOCK + HTTP_READ_MAX`` = :data:`READ_SIZE` and each ``read``
#: hands one on whole. A block larger than the ``read`` asking for it is cut,
#: and the cut copied: at a 1 MiB minimum (blocks of 1 to 1.4 MiB) that was
#: every byte copied once more and sent in two pieces.
READ_BLOCK = READ_SIZE - HTTP_READ_MAX
#: The first bytes of an upload gather in a buffer this big; only a file that
#: outgrows it takes a part buffer (:data:`PART_SIZE`), so small files stay small.
HEAD_SIZE = 256 * 1024
#: Parts uploaded at once per upload.
PART_CONCURRENCY = 8
#: Metadata (``x-amz-meta-...``) and tag names fileferry keeps on objects.
META_SHA256 = "fileferry-sha256"
META_MTIME = "fileferry-mtime"
#: How long an abort waits for the store to drop a multipart upload.
ABORT_TIMEOUT = 30.0
#: Threads hashing full parts (CPU work: more than the cores buys nothing).
HASH_THREADS = 2

#: The hashing threads, apart from the loop's default pool. That pool also
#: carries the signed metadata requests (HEAD, listings, tagging), each of which
#: waits on the store: when the store is slow they hold every thread, and a
#: part's hash queued behind them stalls its upload (and so the client's data
#: connection) for no CPU reason. Hashing is CPU work and never waits, so a
#: couple of its own threads always have room.
_hash_pool = SharedPool(HASH_THREADS, "fileferry-s3-sha")


class S3Reader(Reader):
    """The body of one (ranged) GET, read on demand, one block ahead.

    While the data path sends a block, obstore is already gathering the
    next one on its own threads, instead of the body waiting in the
    socket until asked for. A single download gains the most (its two
    halves overlap); a transfer then holds at most two blocks.
    """

    def __init__(self, result: Any, size: int) -> None:
        self.size = size
        self._stream: Any = result.stream(min_chunk_size=READ_BLOCK) if result else None
        self._buf = memoryview(b"")
        self._closed = False
        self._next: Any = None

    async def read(self, n: int) -> bytes:
        if self._closed:
            raise StorageError("Reader is closed")
        if not self._buf:
            if self._stream is None:
                return b""
            try:
                pending, self._next = self._next, None
                block = await (pending if pending is not None else self._stream.__anext__())
                # Ask for the next block now: obstore gathers it while this one is sent.
                self._next = self._stream.__anext__()
            except StopAsyncIteration:
                self._stream = None
                return b""
            except Exception as exc:
                raise store_error(exc) from None
            if len(block) <= n:
                # The common case: obstore made a ``bytes``, and ``bytes()`` of one is itself.
                return bytes(block)
            self._buf = memoryview(block)
        chunk, self._buf = self._buf[: max(n, 0)], self._buf[max(n, 0) :]
        return bytes(chunk)

    async def close(self) -> None:
        # Dropping the stream drops the response: its connection closes, the GET
        # stops. The block asked for ahead is cancelled first, which drops
        # obstore's task for it, the stream's last other holder.
        self._closed = True
        pending, self._next = self._next, None
        if pending is not None:
            pending.cancel()
            if pending.done() and not pending.cancelled():
                pending.exception()
        self._stream = None
        self._buf = memoryview(b"")


class _Failed(Exception):
    """Put into the part queue by ``abort``: the generator raises it, obstore aborts."""


class S3Upload(Upload, ReceivesInto):
    """One upload; see the module docstring for how it becomes an object.

    The bytes gather in one buffer at a time: a free part buffer if one is
    spare, else first a small one (:data:`HEAD_SIZE`), so a small file
    never costs a part-sized allocation; once that is full, a part buffer
    (``s3parts.take_buffer``) that starts with a copy of it. Each full
    part is hashed, lent to obstore and replaced by a fresh one. The data
    path receives into the buffer itself (``ReceivesInto``); ``write``
    copies into it.
    """

    def __init__(
        self,
        storage: S3Storage,
        key: str,
        name: str,
        *,
        base: int = 0,
        exclusive: bool = False,
    ) -> None:
        self._storage = storage
        self._key = key
        self._name = name
        self._exclusive = exclusive
        self._base = base  # bytes of the existing object to copy in first (APPE, REST+STOR)
        self._copied = base == 0
        self._sha = hashlib.sha256()
        # A free part buffer costs nothing to take; only without one is a head made.
        spare = spare_buffer()
        self._buf = spare if spare is not None else bytearray(HEAD_SIZE)
        self._view = memoryview(self._buf)
        self._fill = 0
        self._part = spare is not None  # ``_buf`` is a part buffer (PART_SIZE, reusable)
        self._scratch: memoryview | None = None  # received into before the base is copied
        self._queue: asyncio.Queue[memoryview | _Failed | None] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._done = False
        self.size = base
        self.pending_copy = base

    # -- the bytes --------------------------------------------------------

    async def _copy_base(self) -> None:
        """Stream the kept head of the old object in: an object store cannot append in place."""
        self._copied = True
        reader = await self._storage.open_range(self._key, 0, self._base)
        try:
            while block := await reader.read(PART_SIZE):
                await self._take(block)
        finally:
            await reader.close()

    async def _take(self, data: bytes | bytearray | memoryview) -> None:
        """Copy ``data`` into the buffer, handing on each part it fills."""
        src = memoryview(data)
        pos, total = 0, len(src)
        while pos < total:
            k = min(len(self._buf) - self._fill, total - pos)
            self._view[self._fill : self._fill + k] = src[pos : pos + k]
            self._fill += k
            pos += k
            if self._fill == len(self._buf):
                await self._full()

    async def _full(self) -> None:
        """The buffer is full: the head moves into a part buffer, a part is handed on."""
        if self._part:
            await self._hand_on(self._fill)
            self._fill = 0
        part = take_buffer()
        if not self._part:
            part[:HEAD_SIZE] = self._buf  # the file outgrew the head: a part starts with it
            self._part = True
        self._buf, self._view = part, memoryview(part)

    async def _hand_on(self, length: int) -> None:
        """Hash the buffer's first ``length`` bytes beside the loop, then lend them to obstore.

        Hashing a part (milliseconds) runs in a thread, off the loop
        (``_hash_pool``), and is done before the part is lent, so the
        buffer's reuse after obstore lets go of it cannot race the hash.
        """
        await asyncio.get_running_loop().run_in_executor(
            _hash_pool(), self._sha.update, self._view[:length]
        )
        await self._send(self._buf, length)

    async def _parts(self) -> AsyncIterator[memoryview]:
        assert self._queue is not None
        queue = self._queue
        while True:
            item = await queue.get()
            if item is None:
                return
            if isinstance(item, _Failed):
                raise item
            yield item
            # Dropped before the next part arrives: obstore's view is then the last
            # reference, and its end gives the part's place and buffer back.
            del item

    def _start(self) -> None:
        """Begin the multipart upload: obstore's task, fed from the part queue."""
        import obstore

        self._queue = asyncio.Queue(maxsize=1)
        self._task = asyncio.ensure_future(
            obstore.put_async(
                self._storage.store,
                self._key,
                self._parts(),
                chunk_size=PART_SIZE,
                max_concurrency=PART_CONCURRENCY,
            )
        )

    async def _send(self, buf: bytearray | None, length: int = 0) -> None:
        """Queue a part (``None``: the end) for the multipart upload, waiting while it is full.

        A part first takes a place at the store's gate, given back when
        obstore is done with it (``s3parts.lend``).
        """
        if self._task is None:
            self._start()
        assert self._queue is not None and self._task is not None
        item: memoryview | None = None
        if buf is not None:
            release = await self._storage.upload_gate.enter()
            item = lend(buf, length, reuse=True, release=release)
        put = asyncio.ensure_future(self._queue.put(item))
        del item
        try:
            done, _ = await asyncio.wait({put, self._task}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            put.cancel()  # cancelled (ABOR, shutdown): the part must not land after abort()
            raise
        if put not in done:
            put.cancel()
            await self._failed()

    async def _failed(self) -> None:
        """The multipart task ended early: raise its error as the client's."""
        assert self._task is not None
        self._done = True
        try:
            await self._task
        except Exception as exc:
            raise store_error(exc) from None
        raise StorageError("Upload ended early")

    def _drop_buffer(self) -> None:
        """Let go of the buffer being filled (never reused: a receive may have been cut short)."""
        self._buf = bytearray()
        self._view = memoryview(self._buf)
        self._fill = 0
        self._part = False
        self._scratch = None

    # -- Upload and ReceivesInto -------------------------------------------

    def receive_buffer(self) -> memoryview:
        if self._done:
            raise StorageError("Upload is finished")
        if not self._copied:
            # The old object's bytes come first: receive aside, copy them in on ``received``.
            if self._scratch is None:
                self._scratch = memoryview(bytearray(HEAD_SIZE))
            return self._scratch
        return self._view[self._fill :]

    async def received(self, n: int) -> None:
        if self._done:
            raise StorageError("Upload is finished")
        if not self._copied:
            assert self._scratch is not None
            await self.write(self._scratch[:n])
            return
        self._fill += n
        self.size += n
        if self._fill == len(self._buf):
            await self._full()

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._done:
            raise StorageError("Upload is finished")
        if not self._copied:
            await self._copy_base()
        await self._take(data)
        self.size += len(data)

    async def commit(self) -> FileInfo:
        if self._done:
            raise StorageError("Upload is finished")
        if not self._copied:
            await self._copy_base()
        import obstore

        store = self._storage.store
        try:
            if self._task is None:
                self._done = True
                body = lend(self._buf, self._fill, reuse=self._part)
                self._drop_buffer()
                if len(body) > HEAD_SIZE:
                    await asyncio.get_running_loop().run_in_executor(
                        _hash_pool(), self._sha.update, body
                    )
                else:
                    self._sha.update(body)
                await obstore.put_async(
                    store,
                    self._key,
                    body,
                    attributes={META_SHA256: self._sha.hexdigest()},
                    mode="create" if self._exclusive else "overwrite",
                    use_multipart=False,
                )
                del body
            else:
                if self._exclusive and await self._storage.object_exists(self._key):
                    # A multipart completion cannot be made conditional through
                    # obstore; this check leaves a window of one request.
                    await self.abort()
                    raise AlreadyExists()
                if self._fill:
                    await self._hand_on(self._fill)
                elif self._part:
                    give_back(self._buf)  # taken for a part that never came: never lent
                self._drop_buffer()
                await self._send(None)
                self._done = True
                await self._task
                await self._storage.set_tags(self._key, {META_SHA256: self._sha.hexdigest()})
        except StorageError:
            raise
        except Exception as exc:
            raise store_error(exc) from None
        finally:
            self._drop_buffer()
        return FileInfo(
            self._name, FileKind.FILE, self.size, time.time(), 0o644, unique_of(self._key, "f")
        )

    async def abort(self) -> None:
        self._done = True
        self._drop_buffer()
        task, self._task = self._task, None
        if task is None or task.done():
            if task is not None and not task.cancelled():
                task.exception()  # retrieved: not "never retrieved"
            return
        queue = self._queue
        assert queue is not None
        await asyncio.sleep(0)  # a put cancelled just now is gone before the queue is drained
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(_Failed())
        with contextlib.suppress(Exception, asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), ABORT_TIMEOUT)
