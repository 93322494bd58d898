"""Open files of the local backend: readers, uploads, and the calls they make.

Split from ``local.py`` (which maps paths and runs the jail): everything
here acts on a descriptor that is already open and inside the root.

* **Readers** read with ``pread`` in the pool (or hand their descriptor to
  ``sendfile``); ``position`` is the only cursor that matters.
* **Uploads** write to a hidden temp file beside the target and commit with a
  rename (a hard link for exclusive STOU uploads), so nothing that looks whole
  is ever half-written. (Appends in place and resumable partials derive from
  this class: ``localresume``.) Data arrives by ``splice`` on the loop, by buffered
  writes handed to the pool at least a megabyte at a time, or from a TLS pump
  thread (``write_blocking``). The commit's close + rename + stat is a short
  metadata call and runs inline on a local disk (``fscalls``), unless it
  must ``fsync``, write a large buffered tail, or free a large replaced file.
* **Thread hops are tracked per handle** (``_Hops``): a cancelled await does
  not stop its thread, so a descriptor is closed only after its last hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat as stat_mod
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, TypeVar

from fileferry.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InsufficientStorage,
    InvalidName,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    StorageError,
    StorageUnavailable,
)
from fileferry.storage.base import FileInfo, FileKind, Reader, Upload
from fileferry.storage.fastpaths import BlockingWriter, FileBacked, SpliceTarget
from fileferry.storage.fscalls import Calls, log
from fileferry.storage.localappend import roll_back

if TYPE_CHECKING:
    from fileferry.storage.local import LocalStorage

_T = TypeVar("_T")

#: Uploads are handed to a thread in chunks at least this big, to amortise the hop.
FLUSH_SIZE = 1 << 20
#: A buffered upload tail up to this size is written inline by the commit.
INLINE_WRITE = 256 * 1024
#: Freeing a file's blocks (unlink, or a rename over it) grows with its size
#: (and with ``discard`` mounts); larger files are freed in the pool.
INLINE_FREE = 64 << 20
#: ``splice`` flags: move pages rather than copy them where the kernel can.
_SPLICE_MOVE = getattr(os, "SPLICE_F_MOVE", 1)
#: Upper bound for one ``Reader.read`` so a huge ``n`` cannot allocate unbounded memory.
MAX_READ = 8 << 20

#: Hidden name prefix of in-progress uploads (and of the journals of in-place
#: appends, see ``localappend``); such names are never listed or accepted.
TEMP_PREFIX = ".fileferry-upload-"
TEMP_PREFIX_B = os.fsencode(TEMP_PREFIX)

#: ``Opened`` kinds: a fresh temp file; an append in place (fd is the target's,
#: the path its journal); a resumable partial (see ``localpartial``).
TEMP, APPEND, PARTIAL = 0, 1, 2

#: What ``open_write`` prepares:
#: (fd, temp path, target path, bytes already in the upload, size of the file it
#: replaces: a large one is freed by the rename, so that commit is pooled;
#: the kind, bytes already charged for it: a kept partial's size)
Opened = tuple[int, bytes, bytes, int, int, int, int]

_ERRNO_MAP: dict[int, type[StorageError]] = {
    errno.ENOENT: NotFound,
    errno.EEXIST: AlreadyExists,
    errno.EACCES: PermissionDenied,
    errno.EPERM: PermissionDenied,
    errno.EROFS: PermissionDenied,
    errno.ENOTDIR: NotADirectory,
    errno.EISDIR: IsADirectory,
    errno.ENOTEMPTY: DirectoryNotEmpty,
    errno.ENOSPC: InsufficientStorage,
    errno.EDQUOT: InsufficientStorage,
    errno.ENAMETOOLONG: InvalidName,
    errno.ELOOP: PermissionDenied,
}

# copy_file_range refuses some file-system pairs; these mean "copy by hand instead".
_COPY_FALLBACK_ERRNOS = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.EBADF}
)


def translate(exc: OSError) -> StorageError:
    """Map an errno to its storage error; unknown ones are treated as transient."""
    cls = _ERRNO_MAP.get(exc.errno or 0, StorageUnavailable)
    if cls is InsufficientStorage:  # the operator's problem, not the client's: say it loud
        log.warning("no space for writes (%s): clients get 452 until space is freed", exc.strerror)
    return cls()


async def run_in_pool(executor: Executor, fn: Callable[..., _T], *args: object) -> _T:
    try:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
    except OSError as exc:
        raise translate(exc) from exc


def info_from_stat(name: str, st: os.stat_result) -> FileInfo:
    kind = FileKind.DIR if stat_mod.S_ISDIR(st.st_mode) else FileKind.FILE
    unique = f"{st.st_dev:x}g{st.st_ino:x}"
    return FileInfo(name, kind, st.st_size, st.st_mtime, st.st_mode & 0o7777, unique)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def copy_prefix(src: int, dst: int, count: int) -> int:
    """Copy up to ``count`` bytes between the fds' current offsets; returns bytes copied.

    ``copy_file_range`` lets the kernel (or a reflinking file system) do the
    work; the fallback covers file systems and kernels that refuse it.
    """
    copied = 0
    try:
        if not hasattr(os, "copy_file_range"):
            raise OSError(errno.ENOSYS, "copy_file_range unavailable")
        while copied < count:
            n = os.copy_file_range(src, dst, count - copied)
            if n == 0:
                return copied
            copied += n
        return copied
    except OSError as exc:
        if exc.errno not in _COPY_FALLBACK_ERRNOS:
            raise
    while copied < count:
        chunk = os.read(src, min(FLUSH_SIZE, count - copied))
        if not chunk:
            break
        _write_all(dst, chunk)
        copied += len(chunk)
    return copied


def close_first(opened: tuple[int, ...]) -> None:
    os.close(opened[0])


def discard_opened(opened: Opened) -> None:
    if opened[5] == PARTIAL:
        os.close(opened[0])  # a kept partial stays; a new one is swept when stale
        return
    if opened[5] == APPEND:
        fd = opened[0]
        try:
            roll_back(fd, opened[1], opened[3], keep=False)
        finally:
            os.close(fd)
        return
    discard(opened[0], opened[1])


def _fsync_dir(path: bytes) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discard(fd: int, tmp: bytes) -> None:
    if fd >= 0:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


class _Hops:
    """Runs one handle's thread hops and remembers the last one.

    A cancelled await does not stop the thread, so before closing a
    descriptor we wait for any hop still using it; otherwise the fd number
    could be reused and a late write would land in someone else's file.
    """

    def __init__(self, executor: Executor, calls: Calls | None = None) -> None:
        self._executor = executor
        self._calls = calls
        self._last: asyncio.Future[object] | None = None

    async def meta(self, fn: Callable[..., _T], *args: object) -> _T:
        """A short metadata call (close, rename, unlink): inline when the policy allows."""
        calls = self._calls
        if calls is None or not calls.inline:
            return await self.run(fn, *args)
        await self.settle()  # a hop still using the descriptor finishes first
        try:
            return calls.call(fn, *args)
        except OSError as exc:
            raise translate(exc) from exc

    async def run(self, fn: Callable[..., _T], *args: object) -> _T:
        fut = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        fut.add_done_callback(_consume)
        self._last = fut  # type: ignore[assignment]
        try:
            return await asyncio.shield(fut)
        except OSError as exc:
            raise translate(exc) from exc

    async def settle(self) -> None:
        last = self._last
        if last is not None and not last.done():
            await asyncio.wait([last])


def _consume(fut: asyncio.Future[object]) -> None:
    """Mark a shielded hop's exception as seen; the awaiting side reports it."""
    if not fut.cancelled():
        fut.exception()


class LocalReader(Reader, FileBacked):
    """Positional reads (``pread``), so ``position`` is the only cursor that matters."""

    def __init__(self, fd: int, size: int, offset: int, executor: Executor) -> None:
        self._fd = fd
        self._hops = _Hops(executor)  # reads only: they grow with the data, so always pooled
        self.size = size
        self.position = offset

    async def read(self, n: int) -> bytes:
        if self._fd < 0:
            raise StorageError("Reader is closed")
        if n <= 0:
            return b""
        data = await self._hops.run(os.pread, self._fd, min(n, MAX_READ), self.position)
        self.position += len(data)
        return data

    def fileno(self) -> int | None:
        if self._fd < 0:
            return None
        # lseek does no I/O, so it is fine on the loop; it keeps the promise
        # that the descriptor sits at ``position`` even after pread calls.
        os.lseek(self._fd, self.position, os.SEEK_SET)
        return self._fd

    async def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        await self._hops.settle()
        # Closing a read-only descriptor flushes nothing, so it cannot stall the loop.
        os.close(fd)


class LocalUpload(Upload, SpliceTarget, BlockingWriter):
    """Writes to a temp file beside the target; commit renames it into place."""

    def __init__(self, storage: LocalStorage, opened: Opened, name: str, exclusive: bool) -> None:
        self._storage = storage
        self._fd, self._tmp, self._target, self.size, self._replaces, _, charged = opened
        self.charged_before = charged
        self._name = name
        self._exclusive = exclusive
        self._hops = _Hops(storage._executor, storage._calls)
        self._buf = bytearray()
        self._finished = False
        self._failed = False

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._finished or self._failed:
            raise StorageError("Upload is finished")
        before = len(self._buf)
        self._buf += data
        self.size += len(self._buf) - before
        if len(self._buf) >= FLUSH_SIZE:
            chunk, self._buf = self._buf, bytearray()
            await self._write_chunk(chunk)

    async def splice_from(self, pipe: int, n: int) -> None:
        """Move ``n`` bytes from the pipe into the temp file, inside the kernel.

        This runs on the loop, like ``sendfile`` for downloads: a write into
        the page cache costs microseconds per megabyte, far less than a
        thread hop per chunk, and nothing is copied through Python. The
        durable part (``fsync``) still runs in the pool, in :meth:`commit`.
        """
        if self._finished or self._failed:
            raise StorageError("Upload is finished")
        if self._buf:
            chunk, self._buf = self._buf, bytearray()
            await self._write_chunk(chunk)
        await self._hops.settle()
        left = n
        try:
            while left > 0:
                moved = os.splice(pipe, self._fd, left, flags=_SPLICE_MOVE)
                if moved == 0:
                    raise StorageError("The upload pipe ended early.")
                left -= moved
        except OSError as exc:
            self._failed = True
            raise translate(exc) from exc
        except BaseException:
            self._failed = True
            raise
        finally:
            self.size += n - left

    def write_blocking(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` from a worker thread (see ``BlockingWriter``).

        A write to the page cache from the thread that already holds the
        bytes costs less than handing them to the loop and on to the pool.
        """
        if self._finished or self._failed:
            raise StorageError("Upload is finished")
        try:
            if self._buf:
                chunk, self._buf = self._buf, bytearray()
                _write_all(self._fd, chunk)
            _write_all(self._fd, data)
        except OSError as exc:
            self._failed = True  # part may be lost; committing would publish a hole
            raise translate(exc) from exc
        self.size += len(data)

    async def _write_chunk(self, chunk: bytearray) -> None:
        try:
            await self._hops.run(_write_all, self._fd, chunk)
        except BaseException:
            # Part of the chunk may be lost; committing now would publish a hole.
            self._failed = True
            raise

    async def commit(self) -> FileInfo:
        if self._finished:
            raise StorageError("Upload is finished")
        self._finished = True
        if self._failed:
            await self._cleanup()
            raise StorageError()
        chunk, self._buf = self._buf, bytearray()
        # close + rename + stat is metadata. It is real I/O with fsync, with a
        # large buffered tail to write, or when the rename frees a large file.
        slow = self._storage._fsync_uploads or len(chunk) > INLINE_WRITE
        hop = self._hops.run if slow or self._replaces > INLINE_FREE else self._hops.meta
        try:
            st = await hop(self._commit_sync, chunk)
        except BaseException:
            await self._cleanup()
            raise
        return info_from_stat(self._name, st)

    def _commit_sync(self, chunk: bytearray) -> os.stat_result:
        fd = self._fd
        _write_all(fd, chunk)
        fsync = self._storage._fsync_uploads
        if fsync:
            os.fsync(fd)
        self._fd = -1
        os.close(fd)
        if self._exclusive:
            os.link(self._tmp, self._target)
            os.unlink(self._tmp)
        else:
            os.replace(self._tmp, self._target)
        if fsync:
            _fsync_dir(os.path.dirname(self._target))
        return os.stat(self._target)

    async def abort(self) -> None:
        if self._finished:
            return
        self._finished = True
        if not self._keeps():
            self._buf = bytearray()
        await self._cleanup()

    def _keeps(self) -> bool:
        """Whether an abort keeps what was received (resumable mode)."""
        return False

    def _keep_sync(self, fd: int) -> int:
        """Write the buffered tail of a kept upload; returns the file's size."""
        chunk, self._buf = self._buf, bytearray()
        if not self._failed:
            _write_all(fd, chunk)
        return os.fstat(fd).st_size

    async def _cleanup(self) -> None:
        await self._hops.settle()
        fd, self._fd = self._fd, -1
        try:
            await self._hops.meta(self._discard_sync, fd)
        except RuntimeError:
            # The pool is already shut down (storage closed first): clean up inline.
            self._discard_sync(fd)
        except StorageError:
            pass  # nothing more can be done; the prefix marks it for sweeping

    def _discard_sync(self, fd: int) -> None:
        discard(fd, self._tmp)
