"""Renames on an object store: copy, then delete, never losing the source.

A file is one server-side copy (the store copies metadata and tags with it)
and one delete, in that order: a failure in between leaves both names, never
neither. A folder has no single key to move: every key under it is copied
first, and only when all copies succeeded are the sources deleted. That is
bounded by :data:`RENAME_LIMIT` keys; a bigger folder is refused with a 550
that says why, rather than left half moved after minutes of copying.

The keys are listed with our own signed ``ListObjectsV2`` requests, not
obstore's listing, because a folder marker (``name/``) and a file (``name``)
look the same once obstore has dropped the marker's trailing ``/``. Folder
listings (LIST, NLST, MLSD) go the same way (``storage/s3listing.py``),
page by page of :data:`LIST_PAGE` keys, so the page size is ours to choose
(and to make small in a test that must cross many pages without making
many objects).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from fileferry.errors import (
    DirectoryNotEmpty,
    InvalidName,
    IsADirectory,
    NotADirectory,
    NotFound,
    StorageError,
)
from fileferry.paths import split
from fileferry.storage.s3paths import store_error

if TYPE_CHECKING:
    from fileferry.storage.s3 import S3Storage

#: Most keys a folder rename moves; above it RNTO is refused (550).
RENAME_LIMIT = 1000
#: Keys asked for per page of a folder listing (S3's own maximum is 1000).
LIST_PAGE = 1000
#: Keys asked for per page of the flat listing behind a folder rename.
KEYS_PAGE = 1000

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class FolderTooLarge(StorageError):
    reply_code = 550
    reply_text = f"Folder too large to rename on an object store (over {RENAME_LIMIT} objects)"


def keys_of(body: bytes) -> list[str]:
    """The keys of one ``ListObjectsV2`` page."""
    root = ET.fromstring(body)
    return [c.findtext(f"{_NS}Key") or "" for c in root.iter(f"{_NS}Contents")]


async def list_keys(storage: S3Storage, prefix: str, limit: int) -> list[str]:
    """Every key under ``prefix``, at most ``limit + 1`` of them (the caller checks the cap).

    SeaweedFS answers ``IsTruncated`` false for a full page that ends on a
    folder marker though keys inside that folder follow; trusting it would
    let a folder rename move part of a tree and leave the rest behind. So a
    full page ending on a marker is followed by one more request that starts
    after the marker (on a store without the quirk, that page is empty).
    """
    keys: list[str] = []
    page = KEYS_PAGE
    query = {"list-type": "2", "prefix": prefix, "max-keys": str(page)}
    while True:
        answer = storage._check(await storage._call("GET", "", query=query), 200)
        found = keys_of(answer.body)
        keys += found
        root = ET.fromstring(answer.body)
        token = root.findtext(f"{_NS}NextContinuationToken")
        truncated = root.findtext(f"{_NS}IsTruncated") == "true" and bool(token)
        after_marker = not truncated and len(found) >= page and found[-1].endswith("/")
        if len(keys) > limit or not (truncated or after_marker):
            return keys
        query = {k: v for k, v in query.items() if k not in ("continuation-token", "start-after")}
        if truncated:
            query["continuation-token"] = token or ""
        else:
            query["start-after"] = found[-1]


async def rename(storage: S3Storage, src: str, dst: str) -> None:
    import obstore

    loc = storage.location
    info = await storage.stat(src)
    if src == dst:
        return
    if info.is_dir and dst.startswith(src.rstrip("/") + "/"):
        raise InvalidName()
    if dst == "/":
        raise DirectoryNotEmpty() if info.is_dir else IsADirectory()
    await storage._require_folder(split(dst)[0])
    try:
        target = await storage.stat(dst)
    except NotFound:
        target = None
    src_key, dst_key = loc.key(src), loc.key(dst)
    if not info.is_dir:
        if target is not None and target.is_dir:
            raise IsADirectory()
        try:
            await obstore.copy_async(storage.store, src_key, dst_key)
            await obstore.delete_async(storage.store, src_key)
        except Exception as exc:
            raise store_error(exc) from None
        return
    if target is not None:
        if not target.is_dir:
            raise NotADirectory()
        if await storage._has_keys(loc.folder(dst)) and [
            k for k in await list_keys(storage, loc.folder(dst), 2) if k != loc.folder(dst)
        ]:
            raise DirectoryNotEmpty()
    await _move_folder(storage, loc.folder(src), loc.folder(dst))


async def _move_folder(storage: S3Storage, src: str, dst: str) -> None:
    import obstore

    keys = await list_keys(storage, src, RENAME_LIMIT)
    if len(keys) > RENAME_LIMIT:
        raise FolderTooLarge()
    files = [k for k in keys if not k.endswith("/")]
    # Every folder along the way, deepest first: their markers (or, on stores
    # that keep real folders, the folders themselves) go once they are empty.
    folders = {src} | {k for k in keys if k.endswith("/")}
    for k in files:
        parts = k[len(src) :].split("/")[:-1]
        folders |= {src + "/".join(parts[: i + 1]) + "/" for i in range(len(parts))}
    try:
        storage._check(await storage._call("PUT", dst), 200)
        for folder in sorted(folders):
            if folder != src:
                storage._check(await storage._call("PUT", dst + folder[len(src) :]), 200)
        for k in files:
            await obstore.copy_async(storage.store, k, dst + k[len(src) :])
    except Exception as exc:
        raise store_error(exc) from None
    try:
        for k in files:
            await obstore.delete_async(storage.store, k)
        for folder in sorted(folders, key=len, reverse=True):
            storage._check(await storage._call("DELETE", folder), 204, 200, 404)
    except Exception as exc:
        raise store_error(exc) from None
