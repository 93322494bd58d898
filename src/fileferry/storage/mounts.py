"""Virtual folders: other storages mounted into one tree at virtual paths.

A user's tree is their home (the *base* storage) with, say, a shared
``/outbox`` from another directory mounted read-only. :class:`MountedStorage`
routes each virtual path to the storage that holds it (the longest mount
point that is a prefix wins, so mounts may nest) and hands that storage a
path relative to the mount, which it jails as usual: a path can never climb
out of a mount, because ``..`` was resolved away before it got here and the
mounted storage jails symlinks at its own boundary.

Rules the composition enforces, whatever the mounted storages are:

* a read-only mount refuses every change inside it with 550;
* mount points, and folders that lead to one, cannot be removed, renamed,
  overwritten or created, since the mount would otherwise hang in the air or
  hide what was there;
* a rename across two storages is refused (550) rather than emulated by a
  copy: a copy of a large tree is neither atomic nor quick, and a client
  that wants it can download and upload;
* folders that lead to a mount point but do not exist in the base storage
  are listed as empty directories, so a mount at ``/a/b`` is reachable even
  when the home has no ``a``.

Readers and uploads are the routed storage's own objects, so whatever fast
path they offer (``storage.fastpaths``: ``sendfile``, ``splice``...) is kept.
The inner storages are not owned: whoever built them closes them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from fileferry.errors import (
    AlreadyExists,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
)
from fileferry.paths import split
from fileferry.storage.base import FileInfo, FileKind, Reader, Row, RowRenderer, Storage, Upload

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Mount:
    #: A normalised virtual path other than ``/``.
    path: str
    storage: Storage
    read_only: bool = False


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


class _Adjust(Generic[_T]):
    """Wraps a renderer with what :meth:`MountedStorage.list` does to entries.

    ``unique`` values get the storage's namespace prefix; mount entries
    replace same-named rows and are added after the rest; the result is cut
    to ``limit`` again. Pure computation, so it may run in a worker thread.
    """

    def __init__(
        self,
        render: RowRenderer[_T],
        prefix: str,
        extra: dict[str, FileInfo],
        limit: int | None,
    ) -> None:
        self._render = render
        self._prefix = prefix
        self._extra = extra
        self._limit = limit
        self.names_only: bool = getattr(render, "names_only", False)
        self.needs_unique: bool = getattr(render, "needs_unique", True)

    def __call__(self, rows: list[Row], /) -> _T:
        prefix = self._prefix
        if prefix:
            rows = [
                (n, d, s, m, mo, prefix + u if u is not None else None)
                for n, d, s, m, mo, u in rows
            ]
        extra = self._extra
        if extra:
            rows = [r for r in rows if r[0] not in extra] + [e.row() for e in extra.values()]
            if self._limit is not None:
                rows = rows[: max(self._limit, 0)]
        return self._render(rows)


class MountedStorage(Storage):
    """``base`` with each :class:`Mount` grafted in at its path."""

    def __init__(self, base: Storage, mounts: Iterable[Mount]) -> None:
        self._base = base
        self._mounts = sorted(mounts, key=lambda m: len(m.path), reverse=True)
        for m in self._mounts:
            if m.path == "/" or not m.path.startswith("/") or m.path.endswith("/"):
                raise ValueError(f"bad mount point {m.path!r}")
        # A path may land in any part: what one can do, and what all guarantee.
        caps = base.capabilities
        for m in self._mounts:
            caps = caps.combine(m.storage.capabilities)
        self.capabilities = caps
        self._created = time.time()
        # ``unique`` is only unique within one storage (memory storages all
        # count from 1), so entries from each mounted storage get a prefix.
        self._namespaces: dict[int, str] = {id(base): ""}
        for m in self._mounts:
            self._namespaces.setdefault(id(m.storage), f"v{len(self._namespaces)}.")

    # -- routing ------------------------------------------------------------------

    def _route(self, path: str) -> tuple[Storage, str, Mount | None]:
        for m in self._mounts:
            if _inside(path, m.path):
                return m.storage, path[len(m.path) :] or "/", m
        return self._base, path, None

    def _leads_to_mount(self, path: str) -> bool:
        """``path`` is a mount point or a folder above one."""
        prefix = path.rstrip("/") + "/"
        return any(m.path == path or m.path.startswith(prefix) for m in self._mounts)

    def _writable(self, path: str) -> tuple[Storage, str, Mount | None]:
        storage, inner, mount = self._route(path)
        if mount is not None and mount.read_only:
            raise PermissionDenied("Read-only folder.")
        return storage, inner, mount

    def _refuse_structural(self, path: str, error: type[Exception] = PermissionDenied) -> None:
        if self._leads_to_mount(path):
            raise error("A virtual folder is mounted there.")

    def _own(self, storage: Storage, info: FileInfo) -> FileInfo:
        prefix = self._namespaces[id(storage)]
        if prefix and info.unique is not None:
            return replace(info, unique=prefix + info.unique)
        return info

    def _synthetic(self, name: str) -> FileInfo:
        return FileInfo(name, FileKind.DIR, 0, self._created, 0o755)

    async def _children(self, path: str) -> dict[str, FileInfo]:
        """Entries that mounts add directly under directory ``path``."""
        prefix = path.rstrip("/") + "/"
        found: dict[str, FileInfo] = {}
        for m in self._mounts:
            if not m.path.startswith(prefix):
                continue
            name = m.path[len(prefix) :].split("/", 1)[0]
            if name in found:
                continue
            child = prefix + name
            try:
                info = await self.stat(child)
            except (NotFound, NotADirectory, PermissionDenied):
                info = self._synthetic(name)
            found[name] = info
        return found

    # -- reads --------------------------------------------------------------------

    async def resume_offset(self, path: str) -> int | None:
        storage, inner, _ = self._route(path)
        return await storage.resume_offset(inner)

    async def kept_bytes(self, path: str) -> int:
        storage, inner, _ = self._route(path)
        return await storage.kept_bytes(inner)

    async def stored_digest(self, path: str, algorithm: str) -> str | None:
        storage, inner, _ = self._route(path)
        return await storage.stored_digest(inner, algorithm)

    async def stat(self, path: str) -> FileInfo:
        storage, inner, mount = self._route(path)
        name = split(path)[1] or "/"
        if mount is not None and inner == "/":
            try:
                return self._own(storage, replace(await storage.stat("/"), name=name))
            except NotFound:
                return self._synthetic(name)
        try:
            info = self._own(storage, await storage.stat(inner))
        except (NotFound, NotADirectory):
            if self._leads_to_mount(path):
                return self._synthetic(name)
            raise
        if not info.is_dir and self._leads_to_mount(path):
            return self._synthetic(name)  # a file cannot hide the way to a mount
        return info

    async def list(self, path: str, limit: int | None = None) -> list[FileInfo]:
        storage, inner, _ = self._route(path)
        try:
            entries = [self._own(storage, e) for e in await storage.list(inner, limit)]
        except (NotFound, NotADirectory):
            if not self._leads_to_mount(path):
                raise
            entries = []
        extra = await self._children(path)
        if extra:
            entries = [e for e in entries if e.name not in extra] + list(extra.values())
            if limit is not None:
                entries = entries[: max(limit, 0)]
        return entries

    async def list_rendered(
        self, path: str, render: RowRenderer[_T], limit: int | None = None
    ) -> _T:
        """:meth:`list`'s rules, with the routed storage's fast path kept.

        The mount points under ``path`` are looked up first (on the loop, as
        in :meth:`list`); the adjustments (``unique`` namespace, mount
        entries replacing what they hide) then run wherever the routed
        storage runs ``render``, usually its scanning thread.
        """
        storage, inner, _ = self._route(path)
        extra = await self._children(path)
        adjust = _Adjust(render, self._namespaces[id(storage)], extra, limit)
        try:
            return await storage.list_rendered(inner, adjust, limit)
        except (NotFound, NotADirectory):
            if not self._leads_to_mount(path):
                raise
        return adjust([])

    async def open_read(self, path: str, offset: int = 0) -> Reader:
        if self._leads_to_mount(path):
            raise IsADirectory()
        storage, inner, _ = self._route(path)
        return await storage.open_read(inner, offset)

    # -- changes ------------------------------------------------------------------

    async def open_write(
        self,
        path: str,
        offset: int = 0,
        *,
        append: bool = False,
        exclusive: bool = False,
    ) -> Upload:
        self._refuse_structural(path, IsADirectory)
        storage, inner, _ = self._writable(path)
        return await storage.open_write(inner, offset, append=append, exclusive=exclusive)

    async def mkdir(self, path: str) -> None:
        self._refuse_structural(path, AlreadyExists)
        storage, inner, _ = self._writable(path)
        await storage.mkdir(inner)

    async def rmdir(self, path: str) -> None:
        self._refuse_structural(path)
        storage, inner, _ = self._writable(path)
        await storage.rmdir(inner)

    def local_path(self, path: str) -> str | None:
        storage, inner, _ = self._route(path)
        return storage.local_path(inner)

    async def remove(self, path: str) -> None:
        self._refuse_structural(path, IsADirectory)
        storage, inner, _ = self._writable(path)
        await storage.remove(inner)

    async def rename(self, src: str, dst: str) -> None:
        self._refuse_structural(src)
        self._refuse_structural(dst)
        src_storage, src_inner, src_mount = self._writable(src)
        _, dst_inner, dst_mount = self._writable(dst)
        if src_mount is not dst_mount:
            raise PermissionDenied("Cannot move between virtual folders.")
        await src_storage.rename(src_inner, dst_inner)

    async def set_mtime(self, path: str, mtime: float) -> FileInfo:
        self._refuse_structural(path)
        storage, inner, _ = self._writable(path)
        info = await storage.set_mtime(inner, mtime)
        return replace(info, name=split(path)[1] or "/")

    async def set_mode(self, path: str, mode: int) -> FileInfo:
        self._refuse_structural(path)
        storage, inner, _ = self._writable(path)
        info = await storage.set_mode(inner, mode)
        return replace(info, name=split(path)[1] or "/")
