"""Bytes and objects under a bucket prefix: one flat listing, not a folder walk.

A folder walk of a bucket costs a delimiter listing per folder; a flat
``ListObjectsV2`` without a delimiter returns every key under the prefix,
1000 per page, whatever the folders, with each object's size. That is the
cheapest count S3 offers short of its inventory reports, so the web admin's
bucket figure (``server/rootusage.py``) is made this way.

It is blocking and self-contained (signed requests through the shared
:class:`~fileferry.storage.s3request.SignedClient`, parsing here) so that it
runs on a thread of its own: a bucket of millions of keys is thousands of
pages, and none of that parsing should run on the server's event loop.
Folder markers (``name/``) are not files and are not counted; uploads in
progress are not objects yet and are not listed by S3 either.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from fileferry.storage.s3paths import StoreFailed, StoreUnreachable, classify
from fileferry.storage.usage import Tally, Usage

if TYPE_CHECKING:
    from fileferry.storage.s3 import S3Storage

#: Keys per page (S3's own maximum).
PAGE = 1000

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def count_blocking(
    storage: S3Storage,
    path: str,
    deadline: float,
    stop: threading.Event,
    *,
    page: int = PAGE,
) -> Tally:
    """Every object under folder ``path`` of ``storage``, counted page by page.

    The first page is always fetched (so a dead store raises, rather than
    reading as empty); before each later page, a passed ``deadline``
    (``time.monotonic()``) or a set ``stop`` ends the count with what was
    found so far and ``complete`` False. Keys are asked URL-encoded, because
    a key may hold characters XML 1.0 cannot carry.
    """
    prefix = storage.location.folder(path)
    bucket = storage.location.bucket
    query = {"list-type": "2", "prefix": prefix, "max-keys": str(page), "encoding-type": "url"}
    total = objects = 0
    while True:
        try:
            answer = storage.client.request_blocking("GET", bucket, query=query)
        except ConnectionError:  # refused, reset, closed without an answer (after a retry)
            raise StoreUnreachable() from None
        except OSError as exc:
            raise classify(str(exc)) from None
        storage._check(answer, 200)
        try:
            root = ET.fromstring(answer.body)
        except ET.ParseError:
            raise StoreFailed() from None
        encoded = root.findtext(f"{_NS}EncodingType") == "url"
        listed = 0
        key = ""
        for item in root.iter(f"{_NS}Contents"):
            listed += 1
            key = item.findtext(f"{_NS}Key") or ""
            if encoded:
                key = urllib.parse.unquote_plus(key)
            if key.endswith("/"):
                continue  # a folder marker
            try:
                total += int(item.findtext(f"{_NS}Size") or 0)
            except ValueError:
                raise StoreFailed() from None
            objects += 1
        token = root.findtext(f"{_NS}NextContinuationToken")
        truncated = root.findtext(f"{_NS}IsTruncated") == "true" and bool(token)
        # SeaweedFS ends a full page on a folder marker with IsTruncated false
        # though keys inside the folder follow: ask once more, after the marker.
        after_marker = not truncated and listed >= page and key.endswith("/")
        if not truncated and not after_marker:
            return Tally(Usage(total, objects), complete=True)
        if stop.is_set() or time.monotonic() > deadline:
            return Tally(Usage(total, objects), complete=False)
        query = {k: v for k, v in query.items() if k not in ("continuation-token", "start-after")}
        if truncated:
            query["continuation-token"] = token or ""
        else:
            query["start-after"] = key
