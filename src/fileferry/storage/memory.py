"""An in-memory storage backend, for tests and for embedding fileferry.

It follows the :class:`~fileferry.storage.base.Storage` contract exactly as the
disk backend does (same errors for the same situations), so the contract test
suite can run against both and server tests need no temporary directories.

Every operation runs to completion without awaiting, so on one event loop each
call is atomic with respect to the others; no locking is needed.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fileferry.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidName,
    InvalidOffset,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    StorageError,
)
from fileferry.paths import components, split
from fileferry.storage.base import Capabilities, FileInfo, FileKind, Reader, Storage, Upload

__all__ = ["MemoryStorage"]

_FILE_MODE = 0o644
_DIR_MODE = 0o755


@dataclass(eq=False)
class _Node:
    unique: str
    mtime: float


@dataclass(eq=False)
class _File(_Node):
    # Immutable bytes: a Reader can keep a snapshot while the file is replaced.
    data: bytes = b""


@dataclass(eq=False)
class _Dir(_Node):
    children: dict[str, _Node] = field(default_factory=dict)


def _check_names(path: str) -> list[str]:
    """Refuse names the disk backend would refuse, so both behave alike."""
    names = components(path)
    for name in names:
        if name in (".", "..") or "\0" in name:
            raise InvalidName()
        try:
            name.encode("utf-8", "surrogateescape")
        except UnicodeError:
            raise InvalidName() from None
    return names


class _MemoryReader(Reader):
    """Reads a snapshot, so a concurrent overwrite never tears a download."""

    def __init__(self, data: bytes, offset: int) -> None:
        self._data: bytes | None = data
        self.size = len(data)
        self._position = offset

    async def read(self, n: int) -> bytes:
        if self._data is None:
            raise StorageError("Reader is closed")
        chunk = self._data[self._position : self._position + max(n, 0)]
        self._position += len(chunk)
        return chunk

    async def close(self) -> None:
        self._data = None


class _MemoryUpload(Upload):
    """Buffers privately until commit, mirroring a temp file renamed into place."""

    def __init__(self, storage: MemoryStorage, path: str, initial: bytes, exclusive: bool) -> None:
        self._storage = storage
        self._path = path
        self._exclusive = exclusive
        self._buf: bytearray | None = bytearray(initial)
        self.size = len(initial)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._buf is None:
            raise StorageError("Upload is finished")
        self._buf.extend(data)
        self.size = len(self._buf)

    async def commit(self) -> FileInfo:
        if self._buf is None:
            raise StorageError("Upload is finished")
        data = bytes(self._buf)
        self._buf = None
        return self._storage._install(self._path, data, self._exclusive)

    async def abort(self) -> None:
        self._buf = None


class MemoryStorage(Storage):
    """A tree of dicts; ``clock`` is injectable so tests can pin mtimes."""

    #: No descriptors (so no zero-copy paths) and no Unix modes.
    capabilities = Capabilities(set_mtime=True, set_mode=False)

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._ids = itertools.count(1)
        self._root = _Dir(unique=self._new_id(), mtime=clock())

    def _new_id(self) -> str:
        return f"m{next(self._ids):x}"

    # -- tree walking -----------------------------------------------------

    def _lookup(self, path: str) -> _Node:
        node: _Node = self._root
        for name in _check_names(path):
            if not isinstance(node, _Dir):
                raise NotADirectory()
            try:
                node = node.children[name]
            except KeyError:
                raise NotFound() from None
        return node

    def _parent(self, path: str) -> tuple[_Dir, str]:
        """The existing parent directory of ``path`` and its last name."""
        _check_names(path)
        parent_path, name = split(path)
        parent = self._lookup(parent_path)
        if not isinstance(parent, _Dir):
            raise NotADirectory()
        return parent, name

    @staticmethod
    def _info(name: str, node: _Node) -> FileInfo:
        if isinstance(node, _Dir):
            return FileInfo(name, FileKind.DIR, 0, node.mtime, _DIR_MODE, node.unique)
        assert isinstance(node, _File)
        return FileInfo(name, FileKind.FILE, len(node.data), node.mtime, _FILE_MODE, node.unique)

    def _touch(self, directory: _Dir) -> None:
        directory.mtime = self._clock()

    # -- Storage ----------------------------------------------------------

    async def stat(self, path: str) -> FileInfo:
        node = self._lookup(path)
        return self._info(split(path)[1] or "/", node)

    async def list(self, path: str, limit: int | None = None) -> list[FileInfo]:
        node = self._lookup(path)
        if not isinstance(node, _Dir):
            raise NotADirectory()
        items = list(node.children.items())
        if limit is not None:
            items = items[: max(limit, 0)]
        return [self._info(name, child) for name, child in items]

    async def open_read(self, path: str, offset: int = 0) -> Reader:
        node = self._lookup(path)
        if isinstance(node, _Dir):
            raise IsADirectory()
        assert isinstance(node, _File)
        if offset < 0 or offset > len(node.data):
            raise InvalidOffset()
        return _MemoryReader(node.data, offset)

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
        parent, name = self._parent(path)
        if not name:
            raise IsADirectory()
        existing = parent.children.get(name)
        if isinstance(existing, _Dir):
            raise IsADirectory()
        old = existing.data if isinstance(existing, _File) else b""
        if append:
            initial = old
        elif offset:
            if existing is None or offset > len(old):
                raise InvalidOffset()
            initial = old[:offset]
        else:
            initial = b""
        return _MemoryUpload(self, path, initial, exclusive)

    def _install(self, path: str, data: bytes, exclusive: bool) -> FileInfo:
        """Commit an upload; re-checks everything, since the tree may have changed."""
        parent, name = self._parent(path)
        existing = parent.children.get(name)
        if isinstance(existing, _Dir):
            raise IsADirectory()
        if exclusive and existing is not None:
            raise AlreadyExists()
        node = _File(unique=self._new_id(), mtime=self._clock(), data=data)
        parent.children[name] = node
        self._touch(parent)
        return self._info(name, node)

    async def mkdir(self, path: str) -> None:
        if path == "/":
            raise AlreadyExists()
        parent, name = self._parent(path)
        if name in parent.children:
            raise AlreadyExists()
        parent.children[name] = _Dir(unique=self._new_id(), mtime=self._clock())
        self._touch(parent)

    async def rmdir(self, path: str) -> None:
        if path == "/":
            raise PermissionDenied()
        parent, name = self._parent(path)
        node = parent.children.get(name)
        if node is None:
            raise NotFound()
        if not isinstance(node, _Dir):
            raise NotADirectory()
        if node.children:
            raise DirectoryNotEmpty()
        del parent.children[name]
        self._touch(parent)

    async def remove(self, path: str) -> None:
        if path == "/":
            raise IsADirectory()
        parent, name = self._parent(path)
        node = parent.children.get(name)
        if node is None:
            raise NotFound()
        if isinstance(node, _Dir):
            raise IsADirectory()
        del parent.children[name]
        self._touch(parent)

    async def rename(self, src: str, dst: str) -> None:
        if src == "/":
            raise InvalidName()
        src_parent, src_name = self._parent(src)
        node = src_parent.children.get(src_name)
        if node is None:
            raise NotFound()
        if src == dst:
            return
        if isinstance(node, _Dir) and dst.startswith(src + "/"):
            raise InvalidName()
        if dst == "/":
            raise DirectoryNotEmpty() if isinstance(node, _Dir) else IsADirectory()
        dst_parent, dst_name = self._parent(dst)
        target = dst_parent.children.get(dst_name)
        if target is not None:
            if isinstance(node, _Dir):
                if not isinstance(target, _Dir):
                    raise NotADirectory()
                if target.children:
                    raise DirectoryNotEmpty()
            elif isinstance(target, _Dir):
                raise IsADirectory()
        del src_parent.children[src_name]
        dst_parent.children[dst_name] = node
        self._touch(src_parent)
        self._touch(dst_parent)

    async def set_mtime(self, path: str, mtime: float) -> FileInfo:
        node = self._lookup(path)
        node.mtime = mtime
        return self._info(split(path)[1] or "/", node)
