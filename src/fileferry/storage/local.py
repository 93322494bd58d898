"""A storage backend on a real directory tree, jailed to its root.

* **Keep slow calls off the loop.** Anything that grows with the data runs
  in a thread pool, batched into one hop per operation (``list`` scans and
  stats in one go, see ``localscan``; ``list_rendered`` also formats the
  listing there; buffered uploads hand over >= 1 MiB). Short metadata calls
  (open, stat, create, rename, commit) run inline on a local disk, where a
  hop costs ten times the call, and in the pool on network file systems
  (``fscalls``). Open files (readers, uploads) live in ``localfiles``.
* **Paths are bytes inside.** Names are ``os.fsencode``-d, so names on disk
  that are not UTF-8 are listed as surrogate escapes and accepted back byte
  for byte; an undecodable name never breaks a listing.
* **Jail by real path**, against a root resolved once at construction. Reads
  and uploads resolve the whole target (in-root symlinks are followed);
  remove, rmdir, mkdir and rename resolve only the parent, since they act on
  the entry itself. A real path outside the root is ``PermissionDenied``.
  ``list`` *omits* symlinks that escape the root, dangle or loop, so a client
  never sees a name it cannot use. Resolve-then-use is not atomic; that is
  acceptable because FTP clients cannot create symlinks.
* **Uploads are hidden temp files** (``TEMP_PREFIX``) beside the target,
  ``os.replace``-d (or hard-linked, for exclusive uploads) into place on
  commit. Such names are never listed nor accepted, so a client can neither
  see nor clobber a pending upload. APPE and REST at the end write in place
  under a lock and a journal (``localappend``); resumable mode keeps
  partials (``localpartial``); which one an upload gets is ``localopen``'s
  call. Every such file is locked while in use, so crash leftovers are
  swept safely (``localsweep``) and do not keep RMD from a folder.
* **Errors are translated at the boundary** to :mod:`fileferry.errors` classes
  with their default text: no host path or OS message reaches a client. The
  ``OSError`` stays chained for the operator's logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import stat as stat_mod
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TypeVar

from fileferry.errors import (
    AlreadyExists,
    ConfigError,
    DirectoryNotEmpty,
    InvalidName,
    InvalidOffset,
    IsADirectory,
    NotADirectory,
    PermissionDenied,
    StorageError,
)
from fileferry.paths import components, split
from fileferry.storage.base import (
    Capabilities,
    FileInfo,
    FileKind,
    Reader,
    Row,
    RowRenderer,
    Storage,
    Upload,
)
from fileferry.storage.fscalls import Calls, inline_for
from fileferry.storage.localfiles import (
    APPEND,
    INLINE_FREE,
    PARTIAL,
    TEMP_PREFIX,
    TEMP_PREFIX_B,
    LocalReader,
    LocalUpload,
    Opened,
    close_first,
    discard_opened,
    info_from_stat,
    run_in_pool,
    translate,
)
from fileferry.storage.localopen import open_upload
from fileferry.storage.localpartial import kept_in, partial_size
from fileferry.storage.localresume import InPlaceUpload, PartialUpload
from fileferry.storage.localscan import scan_rows
from fileferry.storage.localsweep import Swept, clear_hidden, sweep_tree

__all__ = ["DEFAULT_WORKERS", "TEMP_PREFIX", "LocalStorage", "make_executor"]

_TEMP_PREFIX_B = TEMP_PREFIX_B

#: Thread pool size: enough for many concurrent transfers without a thread per client.
DEFAULT_WORKERS = 32
_T = TypeVar("_T")
#: A scan's rows (named here: inside ``LocalStorage``, ``list`` is the method).
_Rows = list[Row]
_Infos = list[FileInfo]
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY


def make_executor(max_workers: int = DEFAULT_WORKERS) -> ThreadPoolExecutor:
    """A pool for file-system calls; shareable between several ``LocalStorage``."""
    return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fileferry-fs")


class LocalStorage(Storage):
    """Files under ``root`` on the local file system.

    ``fsync_uploads`` makes a commit durable (file and directory fsync) at
    the cost of latency. ``executor`` lets several storages share one pool;
    when omitted, the storage owns a pool and shuts it down in :meth:`close`.
    """

    #: Readers and uploads are local files: every fast path of ``storage.fastpaths``.
    capabilities = Capabilities(
        sendfile=True,
        splice=hasattr(os, "splice"),
        blocking_writes=True,
        set_mode=True,
    )

    def __init__(
        self,
        root: str | bytes | os.PathLike[str] | os.PathLike[bytes],
        *,
        fsync_uploads: bool = False,
        executor: Executor | None = None,
        fs_calls: str = "auto",
        resumable_uploads: bool = False,
    ) -> None:
        real = os.path.realpath(os.fsencode(root))
        if not os.path.isdir(real):
            raise ConfigError(f"storage root is not a directory: {os.fsdecode(root)}")
        self._root = real
        self._prefix = real if real.endswith(b"/") else real + b"/"
        self._fsync_uploads = fsync_uploads
        #: Interrupted uploads keep what they received (see ``localpartial``).
        self._resumable = resumable_uploads
        self._owns_executor = executor is None
        self._executor: Executor = executor if executor is not None else make_executor()
        #: Where short metadata calls run (see ``fscalls``): inline on local disks.
        self._calls = Calls(self._executor, inline_for(real, fs_calls), os.fsdecode(real))
        self._closed = False

    # -- path mapping (on the loop: pure computation) ----------------------

    def _host(self, path: str) -> bytes:
        """Map a virtual path to a host path under the (unresolved) root."""
        parts: list[bytes] = []
        for name in components(path):
            try:
                raw = os.fsencode(name)
            except UnicodeError:
                raise InvalidName() from None
            if raw in (b".", b"..") or b"\0" in raw or raw.startswith(_TEMP_PREFIX_B):
                raise InvalidName()
            parts.append(raw)
        return os.path.join(self._root, *parts)

    def local_path(self, path: str) -> str | None:
        try:
            return os.fsdecode(self._host(path))
        except InvalidName:
            return None

    async def _meta(self, fn: Callable[..., _T], *args: object) -> _T:
        """A short metadata call: inline on a local disk, else a pool hop (``fscalls``)."""
        if self._calls.inline:
            try:
                return self._calls.call(fn, *args)
            except OSError as exc:
                raise translate(exc) from exc
        return await run_in_pool(self._executor, fn, *args)

    async def _open(
        self,
        release: Callable[[_T], None],
        fn: Callable[..., _T],
        *args: object,
        inline: bool = True,
    ) -> _T:
        """Like ``run_in_pool``, but if the caller is cancelled, ``release`` what was opened.

        Inline (the policy allows it and ``inline``) there is no await, so no
        window in which a cancellation could orphan the descriptor.
        """
        if inline and self._calls.inline:
            try:
                return self._calls.call(fn, *args)
            except OSError as exc:
                raise translate(exc) from exc
        fut = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            fut.add_done_callback(functools.partial(self._release_late, release))
            raise
        except OSError as exc:
            raise translate(exc) from exc

    def _release_late(self, release: Callable[[_T], None], fut: asyncio.Future[_T]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return
        try:
            self._executor.submit(release, fut.result())
        except RuntimeError:  # pool already shut down
            release(fut.result())

    def _inside(self, real: bytes) -> bool:
        return real == self._root or real.startswith(self._prefix)

    # -- jail (in a worker thread) -----------------------------------------

    def _real(self, host: bytes) -> bytes:
        """Resolve every symlink in ``host``; refuse a result outside the root.

        The root itself is already resolved, so only the components below it
        are looked at (``realpath`` would ``lstat`` every ancestor of the root
        too, on every call). If none is a symlink the path is its own
        resolution; at the first symlink the whole path goes through
        ``realpath``, and the result must still be inside the root.
        """
        prefix = self._prefix
        if host.startswith(prefix):
            path = self._root
            for name in host[len(prefix) :].split(b"/"):
                path = path + b"/" + name if path != b"/" else b"/" + name
                try:
                    if stat_mod.S_ISLNK(os.lstat(path).st_mode):
                        break
                except OSError:
                    return host  # missing (or unreadable) below here: nothing more to resolve
            else:
                return host
        real = os.path.realpath(host)
        if not self._inside(real):
            raise PermissionDenied()
        return real

    def _entry(self, host: bytes) -> bytes:
        """Resolve only the parent, for operations on the directory entry itself."""
        parent, name = os.path.split(host)
        return os.path.join(self._real(parent), name)

    def _on_entry(self, fn: Callable[[bytes], _T], host: bytes) -> _T:
        return fn(self._entry(host))

    # -- Storage -----------------------------------------------------------

    async def stat(self, path: str) -> FileInfo:
        st = await self._meta(self._stat_sync, self._host(path))
        return info_from_stat(split(path)[1] or "/", st)

    def _stat_sync(self, host: bytes) -> os.stat_result:
        return os.stat(self._real(host))

    async def list(self, path: str, limit: int | None = None) -> list[FileInfo]:
        return await run_in_pool(self._executor, self._list_sync, self._host(path), limit)

    def _list_sync(self, host: bytes, limit: int | None) -> _Infos:
        file_kind, dir_kind = FileKind.FILE, FileKind.DIR
        return [
            FileInfo(name, dir_kind if is_dir else file_kind, size, mtime, mode, unique)
            for name, is_dir, size, mtime, mode, unique in self._scan(host, limit)
        ]

    async def list_rendered(
        self, path: str, render: RowRenderer[_T], limit: int | None = None
    ) -> _T:
        """Scan and render in one worker hop: the loop only sees the finished result."""
        return await run_in_pool(self._executor, self._render_sync, self._host(path), render, limit)

    def _render_sync(self, host: bytes, render: RowRenderer[_T], limit: int | None) -> _T:
        names_only = getattr(render, "names_only", False)
        unique = getattr(render, "needs_unique", True)
        return render(self._scan(host, limit, names_only=names_only, unique=unique))

    def _scan(
        self, host: bytes, limit: int | None, *, names_only: bool = False, unique: bool = True
    ) -> _Rows:
        return scan_rows(
            self._real(host),
            self._inside,
            _TEMP_PREFIX_B,
            limit,
            names_only=names_only,
            unique=unique,
        )

    async def open_read(self, path: str, offset: int = 0) -> Reader:
        if offset < 0:
            raise InvalidOffset()
        host = self._host(path)
        fd, size = await self._open(close_first, self._open_read_sync, host, offset)
        return LocalReader(fd, size, offset, self._executor)

    def _open_read_sync(self, host: bytes, offset: int) -> tuple[int, int]:
        # O_NONBLOCK so a FIFO in the tree cannot hang a worker on open.
        fd = os.open(self._real(host), _READ_FLAGS)
        try:
            st = os.fstat(fd)
            if stat_mod.S_ISDIR(st.st_mode):
                raise IsADirectory()
            if not stat_mod.S_ISREG(st.st_mode):
                raise PermissionDenied()
            if offset > st.st_size:
                raise InvalidOffset()
            os.set_blocking(fd, True)
            os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return fd, st.st_size

    async def open_write(
        self,
        path: str,
        offset: int = 0,
        *,
        append: bool = False,
        exclusive: bool = False,
    ) -> Upload:
        if offset < 0:
            raise InvalidOffset()
        if path == "/":
            raise IsADirectory()
        host = self._host(path)
        keep = -1 if append else offset
        # Seeding the temp file with the old content (REST, APPE) grows with
        # the file: only a fresh upload opens inline.
        opened = await self._open(
            discard_opened, self._open_write_sync, host, keep, exclusive, inline=keep == 0
        )
        name = split(path)[1]
        if opened[5] == APPEND:
            return InPlaceUpload(self, opened, name, self._resumable)
        if opened[5] == PARTIAL:
            return PartialUpload(self, opened, name, exclusive)
        upload = LocalUpload(self, opened, name, exclusive)
        upload.pending_copy = opened[3]
        return upload

    def _open_write_sync(self, host: bytes, keep: int, exclusive: bool) -> Opened:
        # Resolving the whole target (``_real``) follows a symlink that stays
        # inside the root (we then replace its target) and refuses one that escapes.
        return open_upload(
            self._real(host),
            keep,
            exclusive,
            root=self._root,
            resumable=self._resumable,
            fsync=self._fsync_uploads,
        )

    async def resume_offset(self, path: str) -> int | None:
        """Bytes kept of an interrupted upload to ``path`` (resumable mode, ``localpartial``)."""
        if not self._resumable or path == "/":
            return None
        return await self._meta(self._resume_offset_sync, self._host(path))

    def _resume_offset_sync(self, host: bytes) -> int | None:
        return partial_size(self._real(host), _TEMP_PREFIX_B)

    async def kept_bytes(self, path: str) -> int:
        if not self._resumable:
            return 0
        return await run_in_pool(self._executor, self._kept_bytes_sync, self._host(path))

    def _kept_bytes_sync(self, host: bytes) -> int:
        return kept_in(self._real(host), _TEMP_PREFIX_B)

    async def mkdir(self, path: str) -> None:
        if path == "/":
            raise AlreadyExists()
        mkdir = functools.partial(os.mkdir, mode=0o755)
        await self._meta(self._on_entry, mkdir, self._host(path))

    async def rmdir(self, path: str) -> None:
        if path == "/":
            raise PermissionDenied()
        await self._meta(self._on_entry, self._rmdir_sync, self._host(path))

    def _rmdir_sync(self, real: bytes) -> None:
        try:
            os.rmdir(real)
        except OSError as exc:
            # A folder that lists empty may hold hidden upload files: dead
            # ones are cleared, and only a live upload keeps it.
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            if not clear_hidden(real, _TEMP_PREFIX_B, self._resumable):
                raise
            os.rmdir(real)

    async def sweep(self, temp_max_age: float, partial_max_age: float) -> Swept:
        """Delete hidden upload files under the root that nothing uses (``localsweep``)."""
        return await run_in_pool(
            self._executor,
            functools.partial(
                sweep_tree,
                self._root,
                _TEMP_PREFIX_B,
                temp_max_age=temp_max_age,
                partial_max_age=partial_max_age,
                keep_partial=self._resumable,
            ),
        )

    async def remove(self, path: str) -> None:
        if path == "/":
            raise IsADirectory()
        host = self._host(path)
        if self._calls.inline and self._calls.call(self._entry_size, host) > INLINE_FREE:
            await run_in_pool(self._executor, self._on_entry, os.unlink, host)
            return
        await self._meta(self._on_entry, os.unlink, host)

    def _entry_size(self, host: bytes) -> int:
        """The size of the entry itself (0 if unknown: the unlink reports errors)."""
        try:
            return os.lstat(self._entry(host)).st_size
        except (OSError, StorageError):
            return 0

    async def rename(self, src: str, dst: str) -> None:
        if src == "/":
            raise InvalidName()
        src_host, dst_host = self._host(src), self._host(dst)
        await self._meta(self._rename_sync, src_host, dst_host, dst == "/")

    def _rename_sync(self, src_host: bytes, dst_host: bytes, dst_is_root: bool) -> None:
        src = self._entry(src_host)
        src_is_dir = stat_mod.S_ISDIR(os.lstat(src).st_mode)
        if dst_is_root:
            raise DirectoryNotEmpty() if src_is_dir else IsADirectory()
        dst = self._entry(dst_host)
        if src == dst:
            return
        if src_is_dir and dst.startswith(src + b"/"):
            raise InvalidName()
        # Check kinds first: the kernel reports some mismatches (a file onto its
        # own parent directory) as ENOTEMPTY, and clients deserve the real reason.
        with contextlib.suppress(FileNotFoundError):
            if stat_mod.S_ISDIR(os.lstat(dst).st_mode) != src_is_dir:
                raise NotADirectory() if src_is_dir else IsADirectory()
        try:
            os.rename(src, dst)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise InvalidName() from exc
            if exc.errno == errno.EEXIST:  # some file systems say this for "not empty"
                raise DirectoryNotEmpty() from exc
            raise

    async def set_mtime(self, path: str, mtime: float) -> FileInfo:
        st = await self._meta(self._set_mtime_sync, self._host(path), mtime)
        return info_from_stat(split(path)[1] or "/", st)

    def _set_mtime_sync(self, host: bytes, mtime: float) -> os.stat_result:
        real = self._real(host)
        before = os.stat(real)
        os.utime(real, ns=(before.st_atime_ns, round(mtime * 1e9)))
        return os.stat(real)

    async def set_mode(self, path: str, mode: int) -> FileInfo:
        if path == "/":
            raise PermissionDenied()
        st = await self._meta(self._set_mode_sync, self._host(path), mode & 0o777)
        return info_from_stat(split(path)[1], st)

    def _set_mode_sync(self, host: bytes, mode: int) -> os.stat_result:
        real = self._real(host)
        if real == self._root:
            raise PermissionDenied()
        os.chmod(real, mode)
        return os.stat(real)

    async def close(self) -> None:
        if self._owns_executor and not self._closed:
            self._closed = True
            await asyncio.to_thread(functools.partial(self._executor.shutdown, wait=True))
