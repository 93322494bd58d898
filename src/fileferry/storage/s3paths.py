"""Where a virtual path lives in a bucket, and what an object store's failures mean to a client.

A storage is a bucket and a key prefix (``s3://bucket/some/prefix``). A file
``/a/b`` is the object ``some/prefix/a/b``; a folder ``/a`` exists when its
marker object ``some/prefix/a/`` exists or any key starts with
``some/prefix/a/`` (a folder implied by its files, as other S3 tools make
them). Names are checked here because obstore would otherwise rewrite them
(a backslash becomes a ``/``) or refuse them with its own error.

Errors: obstore raises its own exception families; :func:`store_error` turns
each into a :class:`~fileferry.errors.StorageError` whose reply code and
text tell the client what happened (busy: 450, unreachable: 451, denied or
no bucket: 550), never the request, the endpoint's credentials or a
stack of Rust error sources.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

from fileferry.errors import (
    AlreadyExists,
    InvalidName,
    NotFound,
    PermissionDenied,
    StorageError,
    StorageUnavailable,
)
from fileferry.paths import components

log = logging.getLogger("fileferry.storage")

#: Longest key S3 accepts, in UTF-8 bytes.
MAX_KEY = 1024
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f\\]")


class StoreBusy(StorageError):
    """Throttled (HTTP 503 SlowDown, 429): a retry later will likely work."""

    reply_code = 450
    reply_text = "Object store busy (throttled); try again later"


class StoreUnreachable(StorageError):
    reply_code = 451
    reply_text = "Object store unreachable; try again later"


class StoreFailed(StorageError):
    """The store answered a server error (500 InternalError...) even after retries."""

    reply_code = 451
    reply_text = "Object store failed the request; try again later"


class AccessDenied(PermissionDenied):
    reply_text = "Access denied by the object store"


class NoSuchBucket(StorageError):
    reply_code = 550
    reply_text = "The bucket does not exist"


@dataclass(frozen=True, slots=True)
class Location:
    """``s3://bucket/prefix`` taken apart; ``prefix`` has no leading or trailing ``/``."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> Location:
        if not url.lower().startswith("s3://"):
            raise ValueError(f"{url!r} is not an s3:// location")
        bucket, _, prefix = url[5:].partition("/")
        prefix = "/".join(p for p in prefix.split("/") if p)
        if not re.fullmatch(r"[a-z0-9][a-z0-9.\-_]{1,62}", bucket):
            raise ValueError(f"{url!r}: {bucket!r} is not a bucket name")
        for name in prefix.split("/") if prefix else ():
            check_name(name)
        return cls(bucket, prefix)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, path: str) -> str:
        """The object key of the virtual path ``path`` (the root: the prefix itself)."""
        names = components(path)
        for name in names:
            check_name(name)
        key = "/".join([self.prefix, *names] if self.prefix else names)
        if len(key.encode("utf-8")) + 1 > MAX_KEY:
            raise InvalidName()
        return key

    def folder(self, path: str) -> str:
        """The key prefix of everything inside folder ``path`` (ends in ``/``, or ``""``)."""
        key = self.key(path)
        return key + "/" if key else ""


def check_name(name: str) -> None:
    """A name obstore and every S3 store keep byte for byte, or ``InvalidName``."""
    if name in ("", ".", "..") or _BAD_NAME.search(name):
        raise InvalidName()
    try:
        name.encode("utf-8")
    except UnicodeError:
        raise InvalidName() from None


def unique_of(key: str, kind: str) -> str:
    """A stable MLSx ``unique`` fact for a key: short, and the same in stat and list."""
    return kind + hashlib.blake2s(key.encode("utf-8"), digest_size=8).hexdigest()


def store_error(exc: BaseException) -> StorageError:
    """The client-facing error for an obstore (or our own request) failure."""
    from obstore import exceptions as oe

    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, oe.NotFoundError | FileNotFoundError):
        return NotFound()
    if isinstance(exc, oe.AlreadyExistsError | oe.PreconditionError):
        return AlreadyExists()
    if isinstance(exc, oe.PermissionDeniedError | oe.UnauthenticatedError | PermissionError):
        return AccessDenied()
    return classify(str(exc))


def classify(text: str, status: int | None = None) -> StorageError:
    """An error from its message (obstore's generic errors carry the HTTP answer in it)."""
    if "NoSuchBucket" in text:
        return NoSuchBucket()
    if (
        status in (429, 503)
        or "SlowDown" in text
        or "503 Service Unavailable" in text
        or "429 Too Many Requests" in text
    ):
        return StoreBusy()
    if status in (401, 403) or "AccessDenied" in text or "403 Forbidden" in text:
        return AccessDenied()
    if status is None and (
        "error sending request" in text
        or "onnection refused" in text
        or "timed out" in text
        or "dns error" in text
        or "Connect" in text
    ):
        return StoreUnreachable()
    if (isinstance(status, int) and status >= 500) or re.search(r"status code: 5\d\d", text):
        return StoreFailed()
    # The client hears only "temporarily unavailable": the operator needs the store's words.
    log.warning("object store error not recognised (answered 451): %.300s", text)
    return StorageUnavailable()
