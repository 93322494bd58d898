"""S3-compatible object storage (AWS S3, MinIO, Ceph RGW, SeaweedFS, R2) behind ``Storage``.

The data path is obstore: a streamed GET per download, a streamed multipart
PUT per upload (``storage/s3io.py``), server-side copies, deletes. What
obstore cannot express (folder markers, metadata replacement, tags, a page
size for listings) goes through ``storage/s3request.py``; folder listings
(paged ``ListObjectsV2``, read off the event loop) are in
``storage/s3listing.py``, folder renames in ``storage/s3tree.py``.
Paths map to keys in ``storage/s3paths.py``.

What an object store is not, and how each command copes (docs/storage.md
has the table):

* no folders: a folder is a ``name/`` marker object or implied by keys
  under it; MKD writes a marker, RMD deletes it once nothing is under it;
* no rename: a file is copied (server-side, metadata and tags included),
  then the source deleted, so a failure never loses it; a folder is moved
  key by key, refused above :data:`~fileferry.storage.s3tree.RENAME_LIMIT`
  objects rather than left half moved (``atomic_dir_rename`` is ``False``);
* no append: APPE and REST+STOR stream the kept bytes of the old object
  into the new upload (cost: reading them once more);
* no settable modification time: MFMT keeps the client's time in the
  object's metadata (a metadata-replacing copy onto itself), shown by
  stat (MDTM, MLST); listings show the store's Last-Modified;
* no descriptors: no ``sendfile``/``splice`` fast paths, and no Unix modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, TypeVar

from fileferry.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidName,
    InvalidOffset,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
)
from fileferry.paths import split
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
from fileferry.storage.s3io import META_MTIME, META_SHA256, S3Reader, S3Upload
from fileferry.storage.s3parts import UploadGate
from fileferry.storage.s3paths import Location, NoSuchBucket, classify, store_error, unique_of
from fileferry.storage.s3request import parse_tags, tagging_body

if TYPE_CHECKING:
    from fileferry.storage.s3listing import FolderRows
    from fileferry.storage.s3request import Answer, SignedClient
    from fileferry.storage.usage import Tally

_T = TypeVar("_T")

__all__ = ["S3Storage"]

_FILE_MODE = 0o644
_DIR_MODE = 0o755


def _when(meta: dict[str, Any]) -> float:
    modified = meta.get("last_modified")
    return modified.timestamp() if isinstance(modified, datetime.datetime) else 0.0


def _mtime(meta: dict[str, Any], attributes: dict[str, str] | None) -> float:
    kept = (attributes or {}).get(META_MTIME)
    if kept is not None:
        try:
            return float(kept)
        except ValueError:
            pass
    return _when(meta)


class S3Storage(Storage):
    """One bucket and key prefix seen as a tree; ``store`` and ``client`` may be shared."""

    capabilities = Capabilities(
        sendfile=False,
        splice=False,
        blocking_writes=False,
        receive_into=True,
        set_mtime=True,
        set_mode=False,
        atomic_dir_rename=False,
    )

    def __init__(
        self,
        location: Location,
        store: Any,
        client: SignedClient,
        upload_gate: UploadGate | None = None,
    ) -> None:
        self.location = location
        self.store = store
        self.client = client
        #: Shared by every storage of one store (``S3Locations``): see ``UploadGate``.
        self.upload_gate = upload_gate or UploadGate()

    # -- lookups ---------------------------------------------------------------

    async def _call(self, method: str, key: str, **kwargs: Any) -> Answer:
        try:
            return await self.client.request(method, self.location.bucket, key, **kwargs)
        except OSError as exc:
            raise classify(str(exc)) from None

    def _check(self, answer: Answer, *ok: int) -> Answer:
        """``answer`` if its status is one of ``ok``; else the client's error for it."""
        if answer.status in ok:
            return answer
        code = answer.error_code()
        if code == "NoSuchBucket":
            raise NoSuchBucket()
        if answer.status == 404:
            raise NotFound()
        raise classify(code, answer.status)

    async def _head(self, key: str) -> tuple[dict[str, Any], dict[str, str]] | None:
        """The object ``key``'s meta and metadata, or ``None``."""
        import obstore
        from obstore.exceptions import NotFoundError

        if not key:
            return None
        try:
            result = await obstore.get_async(self.store, key, options={"head": True})
        except (NotFoundError, FileNotFoundError):
            return None
        except Exception as exc:
            raise store_error(exc) from None
        return result.meta, result.attributes

    async def object_exists(self, key: str) -> bool:
        return await self._head(key) is not None

    async def _marker(self, prefix: str) -> dict[str, str] | None:
        """The headers of folder marker ``prefix`` (ends in ``/``), or ``None``."""
        answer = await self._call("HEAD", prefix)
        if answer.status == 404:
            return None
        self._check(answer, 200)
        return {k.lower(): v for k, v in answer.headers.items()}

    async def _has_keys(self, prefix: str) -> bool:
        """Whether any key starts with ``prefix`` (one listing request of up to 2 keys)."""
        answer = self._check(
            await self._call(
                "GET", "", query={"list-type": "2", "prefix": prefix, "max-keys": "2"}
            ),
            200,
        )
        return b"<Key>" in answer.body

    async def _folder_info(self, path: str) -> FileInfo | None:
        """``path`` as a folder (marker or implied), or ``None``."""
        name = split(path)[1] or "/"
        prefix = self.location.folder(path)
        if not prefix:
            return FileInfo("/", FileKind.DIR, 0, 0.0, _DIR_MODE, unique_of("", "d"))
        headers = await self._marker(prefix)
        if headers is None and not await self._has_keys(prefix):
            return None
        mtime = 0.0
        if headers is not None:
            kept = headers.get("x-amz-meta-" + META_MTIME)
            if kept is not None:
                mtime = float(kept)
            elif "last-modified" in headers:
                mtime = _parse_http_date(headers["last-modified"])
        return FileInfo(name, FileKind.DIR, 0, mtime, _DIR_MODE, unique_of(prefix, "d"))

    async def _missing(self, path: str) -> NotFound | NotADirectory:
        """Why ``path`` is not there: a file where a folder is needed, or nothing."""
        parent = split(path)[0]
        while parent != "/":
            if await self.object_exists(self.location.key(parent)):
                return NotADirectory()
            if await self._folder_info(parent) is not None:
                return NotFound()
            parent = split(parent)[0]
        return NotFound()

    async def _require_folder(self, path: str) -> None:
        if path == "/" or await self._folder_info(path) is not None:
            return
        if await self.object_exists(self.location.key(path)):
            raise NotADirectory()
        raise await self._missing(path)

    # -- Storage ---------------------------------------------------------------

    async def stat(self, path: str) -> FileInfo:
        key = self.location.key(path)
        if path == "/":
            return FileInfo("/", FileKind.DIR, 0, 0.0, _DIR_MODE, unique_of(key, "d"))
        found = await self._head(key)
        if found is not None:
            meta, attributes = found
            return FileInfo(
                split(path)[1],
                FileKind.FILE,
                int(meta["size"]),
                _mtime(meta, attributes),
                _FILE_MODE,
                unique_of(key, "f"),
            )
        folder = await self._folder_info(path)
        if folder is not None:
            return folder
        raise await self._missing(path)

    async def _rows(
        self, path: str, limit: int | None, names_only: bool = False, unique: bool = True
    ) -> FolderRows:
        """The rows of folder ``path`` (``storage/s3listing.py``); 550s when it is none."""
        from fileferry.storage import s3tree
        from fileferry.storage.s3listing import folder_rows

        found = await folder_rows(
            self,
            self.location.folder(path),
            s3tree.LIST_PAGE,
            names_only=names_only,
            unique=unique,
            limit=limit,
        )
        if not found.rows and not found.marker and path != "/":
            if await self.object_exists(self.location.key(path)):
                raise NotADirectory()
            if await self._folder_info(path) is None:
                raise await self._missing(path)
        return found

    async def list(self, path: str, limit: int | None = None) -> list[FileInfo]:
        found = await self._rows(path, limit)
        return await asyncio.to_thread(_infos, found, limit)

    async def list_rendered(
        self, path: str, render: RowRenderer[_T], limit: int | None = None
    ) -> _T:
        """Pages parsed and the rows rendered in worker threads: the loop joins lists only."""
        names_only = getattr(render, "names_only", False)
        unique = getattr(render, "needs_unique", True)
        found = await self._rows(path, limit, names_only, unique)
        return await asyncio.to_thread(_render, found, render, limit)

    async def open_range(self, key: str, offset: int, end: int | None = None) -> Reader:
        """A reader of object ``key`` from ``offset`` (to ``end``); ``NotFound`` if none."""
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            if end is not None:
                result = await obstore.get_async(self.store, key, options={"range": (offset, end)})
            elif offset:
                result = await obstore.get_async(
                    self.store, key, options={"range": {"offset": offset}}
                )
            else:
                result = await obstore.get_async(self.store, key)
        except (NotFoundError, FileNotFoundError):
            raise NotFound() from None
        except Exception as exc:
            if "416" not in str(exc):
                raise store_error(exc) from None
            found = await self._head(key)
            if found is None:
                raise NotFound() from None
            size = int(found[0]["size"])
            if offset != size:
                raise InvalidOffset() from None
            return S3Reader(None, size)
        return S3Reader(result, int(result.meta["size"]))

    async def open_read(self, path: str, offset: int = 0) -> Reader:
        key = self.location.key(path)
        if path == "/":
            raise IsADirectory()
        if offset < 0:
            raise InvalidOffset()
        try:
            return await self.open_range(key, offset)
        except NotFound:
            if await self._folder_info(path) is not None:
                raise IsADirectory() from None
            raise await self._missing(path) from None

    async def open_write(
        self, path: str, offset: int = 0, *, append: bool = False, exclusive: bool = False
    ) -> Upload:
        key = self.location.key(path)
        if path == "/":
            raise IsADirectory()
        parent, name = split(path)
        await self._require_folder(parent)
        found = await self._head(key)
        if found is None and await self._folder_info(path) is not None:
            raise IsADirectory()
        if offset < 0:
            raise InvalidOffset()
        size = int(found[0]["size"]) if found is not None else 0
        if append:
            base = size
        elif offset:
            if found is None or offset > size:
                raise InvalidOffset()
            base = offset
        else:
            base = 0
        return S3Upload(self, key, name, base=base, exclusive=exclusive)

    async def mkdir(self, path: str) -> None:
        if path == "/":
            raise AlreadyExists()
        key = self.location.key(path)
        await self._require_folder(split(path)[0])
        if await self.object_exists(key) or await self._folder_info(path) is not None:
            raise AlreadyExists()
        self._check(await self._call("PUT", key + "/"), 200)

    async def rmdir(self, path: str) -> None:
        if path == "/":
            raise PermissionDenied()
        key = self.location.key(path)
        if await self.object_exists(key):
            raise NotADirectory()
        if await self._folder_info(path) is None:
            raise await self._missing(path)
        answer = self._check(
            await self._call(
                "GET", "", query={"list-type": "2", "prefix": key + "/", "max-keys": "2"}
            ),
            200,
        )
        from fileferry.storage.s3tree import keys_of

        if [k for k in keys_of(answer.body) if k != key + "/"]:
            raise DirectoryNotEmpty()
        self._check(await self._call("DELETE", key + "/"), 204, 200, 404)

    async def remove(self, path: str) -> None:
        if path == "/":
            raise IsADirectory()
        import obstore

        key = self.location.key(path)
        if not await self.object_exists(key):
            if await self._folder_info(path) is not None:
                raise IsADirectory()
            raise await self._missing(path)
        try:
            await obstore.delete_async(self.store, key)
        except Exception as exc:
            raise store_error(exc) from None

    async def rename(self, src: str, dst: str) -> None:
        from fileferry.storage.s3tree import rename

        if src == "/":
            raise InvalidName()
        await rename(self, src, dst)

    async def set_mtime(self, path: str, mtime: float) -> FileInfo:
        key = self.location.key(path)
        found = await self._head(key) if path != "/" else None
        stamp = repr(float(mtime))
        if found is None:
            info = await self.stat(path)  # a folder, or NotFound
            if path != "/":
                headers = {"x-amz-meta-" + META_MTIME: stamp}
                self._check(await self._call("PUT", key + "/", headers=headers), 200)
            return FileInfo(info.name, info.kind, 0, float(mtime), _DIR_MODE, info.unique)
        meta, attributes = found
        headers = {
            "x-amz-copy-source": urllib.parse.quote(f"/{self.location.bucket}/{key}", safe="/"),
            "x-amz-metadata-directive": "REPLACE",
            "x-amz-meta-" + META_MTIME: stamp,
        }
        for name, value in attributes.items():
            if name == "Content-Type":
                headers["content-type"] = value
            elif name.startswith("fileferry-") and name != META_MTIME:
                headers["x-amz-meta-" + name] = value
        self._check(await self._call("PUT", key, headers=headers), 200)
        return FileInfo(
            split(path)[1],
            FileKind.FILE,
            int(meta["size"]),
            float(mtime),
            _FILE_MODE,
            unique_of(key, "f"),
        )

    async def stored_digest(self, path: str, algorithm: str) -> str | None:
        """The SHA-256 fileferry stored when it uploaded the object (metadata or tag)."""
        if algorithm != "SHA-256" or path == "/":
            return None
        key = self.location.key(path)
        found = await self._head(key)
        if found is None:
            return None
        kept = found[1].get(META_SHA256)
        if kept is None:
            answer = await self._call("GET", key, query={"tagging": ""})
            if answer.status == 200:
                kept = parse_tags(answer.body).get(META_SHA256)
        return kept if kept and len(kept) == 64 else None

    async def set_tags(self, key: str, tags: dict[str, str]) -> None:
        """Tag object ``key``; a store without tagging simply keeps no tag (HASH then reads)."""
        with contextlib.suppress(Exception):
            await self._call("PUT", key, query={"tagging": ""}, body=tagging_body(tags))

    async def sweep_uploads(self, older_than: float) -> tuple[int, int]:
        """Abort multipart uploads under this prefix begun over ``older_than`` seconds ago.

        What a crashed (or killed) server leaves: its uploads were never
        completed, so no object shows, but the store keeps (and bills) the
        parts. Another node's upload in progress is younger than the limit
        (``temp_max_age``), so it is left alone. Returns (aborted, still pending).
        """
        from fileferry.storage.s3request import parse_uploads

        cutoff = time.time() - older_than
        prefix = self.location.folder("/")
        query: dict[str, str] = {"uploads": "", "prefix": prefix}
        aborted = kept = 0
        while True:
            answer = self._check(await self._call("GET", "", query=query), 200)
            uploads, more = parse_uploads(answer.body)
            for upload in uploads:
                if upload.initiated > cutoff:
                    kept += 1
                    continue
                done = await self._call("DELETE", upload.key, query={"uploadId": upload.upload_id})
                aborted += done.status in (200, 204)
            if more is None:
                return aborted, kept
            query = {"uploads": "", "prefix": prefix, **more}

    def count_blocking(self, path: str, deadline: float, stop: threading.Event) -> Tally:
        """Bytes and objects under ``path`` by one flat listing (``storage/s3usage.py``)."""
        from fileferry.storage.s3usage import count_blocking

        return count_blocking(self, path, deadline, stop)

    async def close(self) -> None:
        """Nothing to release: the store and client belong to the provider."""


def _entries(found: FolderRows, limit: int | None) -> list[Row]:
    rows = found.entries()
    if limit is not None and len(rows) > max(limit, 0):
        del rows[max(limit, 0) :]
    return rows


def _infos(found: FolderRows, limit: int | None) -> list[FileInfo]:
    file_kind, dir_kind = FileKind.FILE, FileKind.DIR
    return [
        FileInfo(name, dir_kind if is_dir else file_kind, size, mtime, mode, unique)
        for name, is_dir, size, mtime, mode, unique in _entries(found, limit)
    ]


def _render(found: FolderRows, render: RowRenderer[_T], limit: int | None) -> _T:
    return render(_entries(found, limit))


def _parse_http_date(text: str) -> float:
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError):
        return 0.0
