"""The storage interface every backend implements (memory, local disk, later S3).

It is shaped for object stores from day one:

* everything is async, so a backend may do network I/O;
* reads are positional and streamed (``open_read(path, offset)``), so RETR
  with REST never needs a seek on a shared handle;
* writes go through an :class:`Upload` with ``write``/``commit``/``abort``:
  a temporary file renamed into place on disk, a multipart upload on S3.
  Nothing appears under the target name until ``commit`` succeeds, so an
  interrupted STOR never leaves a file that looks whole;
* ``list`` returns :class:`FileInfo` records carrying everything LIST and MLSD
  print, so a listing costs one round trip instead of a stat per entry;
  ``list_rendered`` is its fast form for the data channel: the backend hands
  plain :data:`Row` tuples to a pure formatting function, where it gathered
  them (the local backend: in its scanning thread), and returns the result.

Paths handed to a backend are normalised virtual paths from
:func:`fileferry.paths.resolve` (absolute, ``/``-separated, no ``..``). A
backend still jails them at its own boundary (symlinks on disk). Backends
raise :class:`fileferry.errors.StorageError` subclasses only.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import Protocol, TypeVar

from fileferry.errors import PermissionDenied

_R = TypeVar("_R", covariant=True)
_T = TypeVar("_T")

#: One directory entry as a plain tuple: ``(name, is_dir, size, mtime, mode, unique)``,
#: the fields of :class:`FileInfo` in that order (``mode`` is the permission bits).
#: ``fileferry.protocol.listing.Row`` has the same layout.
Row = tuple[str, bool, int, float, int, "str | None"]


class RowRenderer(Protocol[_R]):
    """A pure function of a directory's rows (e.g. ``protocol.listing.ListingRenderer``).

    Its two hints let a backend skip work the result will not show; a backend
    may ignore them and always fill every field.
    """

    @property
    def names_only(self) -> bool:
        """Only ``name`` and ``is_dir`` are used (the other fields may be zeros)."""

    @property
    def needs_unique(self) -> bool:
        """``unique`` is used (when ``False`` it may be ``None``)."""

    def __call__(self, rows: list[Row], /) -> _R: ...


class FileKind(enum.Enum):
    FILE = "file"
    DIR = "dir"


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One directory entry or stat result.

    ``name`` is the last path component as text; names on disk that are not
    valid UTF-8 carry their raw bytes as surrogate escapes, so they can be
    listed and named again by a client byte for byte.
    """

    name: str
    kind: FileKind
    size: int
    mtime: float
    #: Unix permission bits (e.g. ``0o644``); backends without them report a default.
    mode: int = 0o644
    #: A stable identifier for MLSx ``unique``, or ``None`` when the backend has none.
    unique: str | None = None

    @property
    def is_dir(self) -> bool:
        return self.kind is FileKind.DIR

    def row(self) -> Row:
        """This record as a :data:`Row`."""
        return (self.name, self.kind is FileKind.DIR, self.size, self.mtime, self.mode, self.unique)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do, stated once so the server need not find out by failing.

    The data-path chooser (``server/datapath``) takes a fast path only where
    the storage says it has it *and* the reader or upload in hand implements
    it (:mod:`fileferry.storage.fastpaths`); FEAT and SITE use ``set_mtime``
    and ``set_mode``. The storage contract suite checks each claim, so a
    field here is a promise, not a hint.
    """

    # Abilities: "some readers/uploads/paths can". A fast path is then still
    # taken only for an object that implements it, and a call may refuse
    # (550) on a path where it cannot, e.g. in a mounted folder.

    #: Readers may be ``FileBacked``: ``sendfile`` and threaded ``pread`` apply.
    sendfile: bool = False
    #: Uploads may be ``SpliceTarget``: cleartext uploads go socket -> pipe -> file in the kernel.
    splice: bool = False
    #: Uploads may be ``BlockingWriter``: a TLS pump's writer thread writes them directly.
    blocking_writes: bool = False
    #: Uploads may be ``ReceivesInto``: cleartext uploads are received straight into their buffer.
    receive_into: bool = False
    #: ``set_mtime`` is supported (MFMT).
    set_mtime: bool = True
    #: ``set_mode`` is supported (SITE CHMOD). A backend that keeps the base
    #: method (which refuses) must say ``False``; the contract suite checks.
    set_mode: bool = True

    # Guarantees: "everywhere".

    #: A directory rename is one atomic operation (not a copy-and-delete).
    atomic_dir_rename: bool = True

    def combine(self, other: Capabilities) -> Capabilities:
        """The claim of one tree made of two storages: abilities of either, guarantees of both."""
        return Capabilities(
            sendfile=self.sendfile or other.sendfile,
            splice=self.splice or other.splice,
            blocking_writes=self.blocking_writes or other.blocking_writes,
            receive_into=self.receive_into or other.receive_into,
            set_mtime=self.set_mtime or other.set_mtime,
            set_mode=self.set_mode or other.set_mode,
            atomic_dir_rename=self.atomic_dir_rename and other.atomic_dir_rename,
        )


class Reader(abc.ABC):
    """A streamed read of one file from a fixed starting offset.

    Local-disk shortcuts (a descriptor for ``sendfile``) are not part of it:
    a reader that has one also derives from ``fastpaths.FileBacked``.
    """

    #: The file's total size in bytes (not the number of bytes left to read).
    size: int

    @abc.abstractmethod
    async def read(self, n: int) -> bytes:
        """Return up to ``n`` bytes; ``b""`` only at end of file."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the handle; safe to call more than once."""

    async def __aenter__(self) -> Reader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Upload(abc.ABC):
    """A pending write that becomes visible only on :meth:`commit`.

    An upload that can also be filled by ``splice`` or from a worker thread
    derives from ``fastpaths.SpliceTarget`` / ``fastpaths.BlockingWriter``.
    """

    #: Bytes that will be at the target once committed (initial content + written).
    size: int
    #: Set when the upload writes into the existing file in place (an append):
    #: the file's size when it began. Its bytes are then on disk (and visible to
    #: readers) before ``commit``, and ``abort`` truncates them away. ``None``:
    #: the upload goes somewhere else and is swapped in at ``commit``.
    in_place_base: int | None = None
    #: Bytes of the old file copied into the pending upload (REST below the end):
    #: disk the upload uses before it is committed, which a quota must count.
    pending_copy: int = 0
    #: Bytes this upload found already kept for it (the partial of an earlier,
    #: interrupted upload in resumable mode): counted by a quota already.
    charged_before: int = 0
    #: Set by ``abort``: how many bytes the abort left on disk beyond
    #: ``charged_before`` (resumable mode keeps what was received; may be
    #: negative when a kept partial was started over). 0 when nothing is kept.
    abort_change: int = 0

    @abc.abstractmethod
    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``; the caller may reuse its buffer once this returns."""

    @abc.abstractmethod
    async def commit(self) -> FileInfo:
        """Make the upload visible under its target name, atomically."""

    @abc.abstractmethod
    async def abort(self) -> None:
        """Discard everything written; the target is left as it was. Idempotent."""


class Storage(abc.ABC):
    """A tree of files and folders rooted at virtual ``/``."""

    capabilities: Capabilities = Capabilities()

    @abc.abstractmethod
    async def stat(self, path: str) -> FileInfo:
        """Describe ``path``; the root's ``name`` is ``"/"``. Raises ``NotFound``."""

    @abc.abstractmethod
    async def list(self, path: str, limit: int | None = None) -> list[FileInfo]:
        """The entries of directory ``path``, unsorted, at most ``limit`` of them.

        Raises ``NotFound`` or ``NotADirectory``.
        """

    async def list_rendered(
        self, path: str, render: RowRenderer[_T], limit: int | None = None
    ) -> _T:
        """``render`` applied to the rows of what :meth:`list` returns, in any order.

        Why it exists: a listing of 10,000 entries should not cost 10,000
        objects built in one place and formatted on the event loop in
        another. A backend that scans in a worker thread overrides this to
        build tuples there and run ``render`` (pure computation) in the same
        hop, so the loop only receives the finished payload. This default,
        built on :meth:`list`, is the reference every override must match;
        it runs ``render`` on the caller's thread. Raises what ``list`` raises.
        """
        return render([info.row() for info in await self.list(path, limit)])

    @abc.abstractmethod
    async def open_read(self, path: str, offset: int = 0) -> Reader:
        """Open a file for reading from ``offset``.

        Raises ``NotFound``, ``IsADirectory``, or ``InvalidOffset`` when
        ``offset`` is past the end of the file.
        """

    @abc.abstractmethod
    async def open_write(
        self,
        path: str,
        offset: int = 0,
        *,
        append: bool = False,
        exclusive: bool = False,
    ) -> Upload:
        """Start an upload to ``path``.

        ``offset > 0`` keeps the first ``offset`` bytes of the existing file
        (REST+STOR; ``InvalidOffset`` if the file is shorter). ``append`` keeps
        all of it (APPE). ``exclusive`` makes ``commit`` fail with
        ``AlreadyExists`` if the target exists by then (STOU). The parent must
        exist (``NotFound``); ``path`` must not be a directory (``IsADirectory``).
        """

    async def resume_offset(self, path: str) -> int | None:
        """Bytes kept of an interrupted upload to ``path`` that an upload would continue.

        What SIZE answers while there is one, because that is how clients
        (``curl -C -``, ``lftp put -c``) find where to resume. ``None`` (the
        default): nothing kept, or a backend without resumable uploads.
        """
        return None

    async def stored_digest(self, path: str, algorithm: str) -> str | None:
        """A digest of the whole file ``path`` the backend kept, in lower-case hex.

        Lets HASH answer without reading the file back: the S3 backend
        computes the SHA-256 of every object it uploads as the bytes stream
        and stores it with the object. ``algorithm`` is spelled as FTP
        spells it (``SHA-256``). ``None`` (the default): not kept, so the
        caller reads and digests the file.
        """
        return None

    async def kept_bytes(self, path: str) -> int:
        """Bytes of interrupted uploads kept in directory ``path`` (resumable mode).

        Not listed, yet on disk and charged to a quota: a quota's measure
        adds them (``storage.usage``). 0 (the default): a backend that keeps none.
        """
        return 0

    @abc.abstractmethod
    async def mkdir(self, path: str) -> None:
        """Create one directory; ``AlreadyExists`` or ``NotFound`` (no parent)."""

    @abc.abstractmethod
    async def rmdir(self, path: str) -> None:
        """Remove an empty directory; ``DirectoryNotEmpty``, ``NotADirectory``."""

    @abc.abstractmethod
    async def remove(self, path: str) -> None:
        """Delete a file; ``IsADirectory`` for a directory."""

    @abc.abstractmethod
    async def rename(self, src: str, dst: str) -> None:
        """Move ``src`` to ``dst``, replacing a file at ``dst``.

        Raises ``NotFound``; ``IsADirectory``/``DirectoryNotEmpty`` where a
        directory is in the way; ``InvalidName`` when moving a directory into
        itself.
        """

    @abc.abstractmethod
    async def set_mtime(self, path: str, mtime: float) -> FileInfo:
        """Set a file's or directory's modification time (MFMT); return the new stat."""

    async def set_mode(self, path: str, mode: int) -> FileInfo:
        """Set the permission bits (SITE CHMOD, ``mode & 0o777``); return the new stat.

        Optional: backends without Unix modes keep this default, which refuses.
        """
        raise PermissionDenied("Changing permissions is not supported here.")

    def local_path(self, path: str) -> str | None:
        """Where ``path`` lies on this host's disk, or ``None`` (not a disk, or no such name).

        For the operator's own programs (an upload hook that scans or moves
        the file), never for serving: the jail's symlink checks happen when a
        file is opened, not here. Wrappers pass it through.
        """
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release backend resources (connection pools, thread pools)."""
