"""Folder listings on an object store: ``ListObjectsV2`` pages read fast, off the loop.

A LIST of a folder of 100,000 keys is 100 pages of 1,000 keys. Three things
made it slow, and each has its remedy here:

* **Parsing.** Building an element tree of every page (ten elements per
  key) and then a dataclass per key cost more than the network. A page is
  read instead by a bounded scanner of the fixed shape every S3 store sends
  (``<Contents><Key>..</Key>..<Size>..</Size>..<LastModified>..``): one
  decode of the body, a few ``str.find`` per key. Anything it does not
  expect (CDATA, comments, a doctype, unbalanced elements, an unknown
  entity, a body that does not end the document) sends the page through
  ``xml.etree`` instead, which either reads it exactly or refuses it; a
  page nobody can read is a clear 451 (:class:`BadListing`), never a crash.
* **Building entries.** A row is the plain tuple the protocol's renderer
  takes (``storage.base.Row``), made once per key; names are decoded once
  and only when they hold an escape, timestamps are read by a fast path for
  S3's fixed ``YYYY-MM-DDTHH:MM:SS[.sss]Z`` form (one ``timegm`` per hour
  of the listing), and the renderer's hints skip what it will not print
  (sizes and times for NLST, the ``unique`` digest unless MLSD shows it).
* **The event loop.** Each page is fetched in a worker thread (the signed
  client is blocking ``http.client``) and parsed in another, pipelined:
  the next page's continuation token is picked out of the raw bytes (a
  ``find``), so page k+1 is on the wire while page k is parsed. The loop
  only joins lists of rows; the renderer runs in a thread too.

Why the rows of the whole folder are gathered before the data connection
opens, rather than streamed page by page: the 150 reply announces the
entry count, a missing folder must be a 550 before any 150, and listings
are sorted by name, which is not the store's key order (``a/``, the folder
``a``, sorts after the file ``a.txt`` because ``.`` < ``/``). Memory is
bounded by the ``limit`` the server passes (``max_list_entries`` + 1): no
further page is fetched once that many rows are in hand, and a row is a
six-field tuple, not an object with a ``__dict__``.
"""

from __future__ import annotations

import asyncio
import calendar
import datetime
import re
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fileferry.errors import StorageError
from fileferry.storage.s3paths import unique_of

if TYPE_CHECKING:
    from fileferry.storage.base import Row
    from fileferry.storage.s3 import S3Storage

#: Unix modes shown for objects and folders (a store has none).
FILE_MODE = 0o644
DIR_MODE = 0o755

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_END = "</ListBucketResult>"
_ENTITY = re.compile(r"&(#x[0-9A-Fa-f]{1,6}|#[0-9]{1,7}|amp|lt|gt|quot|apos);|&")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


class BadListing(StorageError):
    """The store answered a listing page that cannot be read (truncated, garbled)."""

    reply_code = 451
    reply_text = "Object store sent an unreadable folder listing; try again later"


@dataclass(slots=True)
class Page:
    """One page read: its rows, whether the folder's own marker was on it, what follows."""

    rows: list[Row]
    #: The folder's own ``prefix`` key (its ``dir/`` marker) was listed.
    marker: bool
    #: Names of the subfolders on this page (a file of the same name yields to them).
    folders: list[str]
    #: The continuation token of the next page, or ``None`` on the last.
    token: str | None


@dataclass(slots=True)
class FolderRows:
    """Everything directly in one folder, as rows."""

    rows: list[Row]
    marker: bool
    #: Names of its subfolders.
    folders: set[str]

    def entries(self) -> list[Row]:
        """The rows, a file whose name is also a subfolder's left out (the folder wins).

        A pass over every row when the folder has subfolders: call it where
        the rows are rendered (a worker thread), not on the event loop.
        """
        folders = self.folders
        if not folders:
            return self.rows
        return [row for row in self.rows if row[1] or row[0] not in folders]


# -- small readers -----------------------------------------------------------------


def _entity(m: re.Match[str]) -> str:
    ref = m.group(1)
    if ref is None:
        raise ValueError("bare '&'")
    if ref[0] != "#":
        return _NAMED[ref]
    code = int(ref[2:], 16) if ref[1] == "x" else int(ref[1:])
    if (code < 0x20 and code not in (0x9, 0xA, 0xD)) or 0xD800 <= code <= 0xDFFF:
        raise ValueError("a character XML 1.0 cannot carry")  # as xml.etree refuses it
    return chr(code)  # ValueError past U+10FFFF: the page is garbled


def unescape(text: str) -> str:
    """XML character data to text (``&amp;``, ``&#34;``...); ``ValueError`` if malformed."""
    return _ENTITY.sub(_entity, text) if "&" in text else text


def _decode_name(text: str, url: bool) -> str:
    """A key or prefix as the store sent it to text, decoded once and only if escaped.

    URL-encoded keys are decoded form-style: S3 and SeaweedFS send a space
    as ``+`` and a plus as ``%2B``.
    """
    if "&" in text:
        text = unescape(text)
    if url and ("%" in text or "+" in text):
        return urllib.parse.unquote_plus(text, errors="strict")
    return text


class _Clock:
    """S3's ``LastModified`` to a Unix time, the same float ``fromisoformat`` gives.

    Every key of a listing has the same fixed form, and keys written close
    together share their time: a text seen before on the page is one dict
    lookup; a new one costs one ``timegm`` per hour seen, then integer
    arithmetic. Milliseconds are divided last, from an exact integer, so the
    result is the correctly rounded value, as ``datetime.timestamp`` gives.
    """

    __slots__ = ("_hours", "_seen")

    def __init__(self) -> None:
        self._hours: dict[str, int] = {}
        #: Texts already read (one page's worth: bounded by the page size).
        self._seen: dict[str, float] = {}

    def __call__(self, text: str) -> float:
        value = self._seen.get(text)
        if value is None:
            value = self._seen[text] = self._read(text)
        return value

    def _read(self, text: str) -> float:
        n = len(text)
        if not ((n == 20 or (n == 24 and text[19] == ".")) and text[-1] == "Z"):
            return _slow_when(text)
        hour = text[:13]
        base = self._hours.get(hour)
        try:
            if base is None:
                if hour[4] != "-" or hour[7] != "-" or hour[10] != "T" or not hour[:4].isdigit():
                    return _slow_when(text)
                base = self._hours[hour] = calendar.timegm(
                    (int(hour[:4]), int(hour[5:7]), int(hour[8:10]), int(hour[11:13]), 0, 0)
                )
            mm, ss = text[14:16], text[17:19]
            if text[13] != ":" or text[16] != ":" or not (mm.isdigit() and ss.isdigit()):
                return _slow_when(text)
            seconds = base + int(mm) * 60 + int(ss)
            if n == 20:
                return float(seconds)
            ms = text[20:23]
            if not ms.isdigit():
                return _slow_when(text)
            return (seconds * 1000 + int(ms)) / 1000
        except (ValueError, OverflowError):
            return _slow_when(text)


def _slow_when(text: str) -> float:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError):
        return 0.0


def _between(text: str, start: int, end: int, tag: str) -> str | None:
    """The character data of the first ``<tag>`` in ``text[start:end]``, or ``None``."""
    i = text.find(f"<{tag}>", start, end)
    if i < 0:
        return None
    i += len(tag) + 2
    j = text.find(f"</{tag}>", i, end)
    if j < 0:
        raise ValueError(f"unclosed <{tag}>")
    return text[i:j]


def next_token(body: bytes) -> str | None:
    """The continuation token of a page, picked out of its bytes without parsing it.

    Lets the next page be requested while this one is parsed. Only a hint:
    the full parse decides (a page whose scan and parse disagree is refused).
    Keys cannot hold a raw ``<``, so the tags found are the document's own.
    """
    if body.find(b"<IsTruncated>true</IsTruncated>") < 0:
        return None
    i = body.rfind(b"<NextContinuationToken>")
    if i < 0:
        return None
    i += len(b"<NextContinuationToken>")
    j = body.find(b"</NextContinuationToken>", i)
    if j < 0:
        return None
    try:
        return unescape(body[i:j].decode("utf-8")) or None
    except ValueError:
        return None


# -- one page ----------------------------------------------------------------------


def parse_page(body: bytes, prefix: str, *, names_only: bool = False, unique: bool = True) -> Page:
    """The rows of one delimiter-listing page of folder ``prefix``; ``BadListing`` if unreadable.

    ``names_only`` leaves sizes and times zero (NLST prints names);
    ``unique`` ``False`` leaves the ``unique`` field ``None`` (it costs a
    digest per key).
    """
    try:
        return _scan_page(body, prefix, names_only, unique)
    except (_Unusual, ValueError, UnicodeDecodeError):
        pass  # the exact parser decides: it reads what is well formed, refuses the rest
    try:
        return _tree_page(body, prefix, names_only, unique)
    except (ET.ParseError, ValueError, UnicodeDecodeError):
        raise BadListing() from None


class _Unusual(Exception):
    """Markup the scanner leaves to ``xml.etree``: well-formed maybe, but not the usual shape."""


def _scan_page(body: bytes, prefix: str, names_only: bool, unique: bool) -> Page:
    text = body.decode("utf-8")
    end = text.rfind(_END)
    if end < 0 or text[end + len(_END) :].strip():
        raise ValueError("not a whole ListBucketResult")
    # CDATA, comments, a doctype, processing instructions: markup that could
    # hide or fake a tag. Looked for only when its rare first character is
    # there at all (a one-character search is a memchr; "<!" is not).
    if ("!" in text and "<!" in text) or ("?" in text[64:] and "<?" in text[5:]):
        raise _Unusual()
    _, *items = text.split("<Contents>")
    if len(items) != text.count("</Contents>"):
        raise ValueError("unbalanced elements")
    if text.count("<CommonPrefixes>") != text.count("</CommonPrefixes>"):
        raise ValueError("unbalanced elements")
    url = _between(text, 0, len(text), "EncodingType") == "url"
    truncated = _between(text, 0, len(text), "IsTruncated") == "true"
    skip = len(prefix)
    when = _Clock()
    rows: list[Row] = []
    append = rows.append
    marker = False
    file_mode = FILE_MODE
    for item in items:
        stop = item.find("</Contents>")
        k = item.find("<Key>", 0, stop)
        k_end = item.find("</Key>", k, stop)
        if stop < 0 or k < 0 or k_end < 0:
            raise ValueError("an object without a key")
        key = item[k + 5 : k_end]
        if "&" in key or (url and ("%" in key or "+" in key)):
            key = _decode_name(key, url)
        if not key.startswith(prefix):
            raise ValueError("a key outside the folder")
        name = key[skip:]
        if not name or "/" in name:
            marker = marker or not name  # the folder's own marker
            continue  # (a store that ignored the delimiter: not an entry of this folder)
        if names_only:
            append((name, False, 0, 0.0, file_mode, None))
            continue
        s = item.find("<Size>", 0, stop)
        s_end = item.find("</Size>", s, stop)
        t = item.find("<LastModified>", 0, stop)
        t_end = item.find("</LastModified>", t, stop)
        append(
            (
                name,
                False,
                int(item[s + 6 : s_end]) if s >= 0 and s_end >= 0 else 0,
                when(item[t + 14 : t_end]) if t >= 0 and t_end >= 0 else 0.0,
                file_mode,
                unique_of(key, "f") if unique else None,
            )
        )
    folders: list[str] = []
    pos = 0
    while (start := text.find("<CommonPrefixes>", pos)) >= 0:
        stop = text.find("</CommonPrefixes>", start)
        if stop < 0:
            raise ValueError("unbalanced elements")
        pos = stop + 17
        raw = _between(text, start, stop, "Prefix")
        _folder_row(_decode_name(raw or "", url), prefix, unique, folders, append)
    token = _between(text, 0, len(text), "NextContinuationToken") if truncated else None
    return Page(rows, marker, folders, unescape(token) if token else None)


def _folder_row(sub: str, prefix: str, unique: bool, folders: list[str], append: Any) -> None:
    if not sub.startswith(prefix) or not sub.endswith("/"):
        raise ValueError("a folder outside the folder")
    name = sub[len(prefix) : -1]
    if not name or "/" in name:
        return  # "prefix/" + "/": a key with an empty path segment, not a folder we can name
    folders.append(name)
    append((name, True, 0, 0.0, DIR_MODE, unique_of(sub, "d") if unique else None))


def _tree_page(body: bytes, prefix: str, names_only: bool, unique: bool) -> Page:
    """The exact, slower reading of a page the scanner left alone."""
    root = ET.fromstring(body)
    if root.tag not in (f"{_NS}ListBucketResult", "ListBucketResult"):
        raise ValueError("not a ListBucketResult")
    ns = _NS if root.tag.startswith("{") else ""
    url = root.findtext(f"{ns}EncodingType") == "url"
    when = _Clock()
    rows: list[Row] = []
    marker = False
    for c in root.iter(f"{ns}Contents"):
        key = c.findtext(f"{ns}Key")
        if key is None:
            raise ValueError("an object without a key")
        key = urllib.parse.unquote_plus(key, errors="strict") if url else key
        if not key.startswith(prefix):
            raise ValueError("a key outside the folder")
        name = key[len(prefix) :]
        if not name or "/" in name:
            marker = marker or not name
            continue
        if names_only:
            rows.append((name, False, 0, 0.0, FILE_MODE, None))
            continue
        rows.append(
            (
                name,
                False,
                int(c.findtext(f"{ns}Size") or 0),
                when(c.findtext(f"{ns}LastModified") or ""),
                FILE_MODE,
                unique_of(key, "f") if unique else None,
            )
        )
    folders: list[str] = []
    for p in root.iter(f"{ns}CommonPrefixes"):
        sub = p.findtext(f"{ns}Prefix") or ""
        sub = urllib.parse.unquote_plus(sub, errors="strict") if url else sub
        _folder_row(sub, prefix, unique, folders, rows.append)
    token = None
    if root.findtext(f"{ns}IsTruncated") == "true":
        token = root.findtext(f"{ns}NextContinuationToken") or None
    return Page(rows, marker, folders, token)


# -- a whole folder ----------------------------------------------------------------


async def _fetch(storage: S3Storage, query: dict[str, str]) -> bytes:
    return storage._check(await storage._call("GET", "", query=query), 200).body


def _forget(task: asyncio.Future[Any]) -> None:
    """Drop a read-ahead no one will wait for, without a "never retrieved" warning."""
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


async def folder_rows(
    storage: S3Storage,
    prefix: str,
    page_size: int,
    *,
    names_only: bool = False,
    unique: bool = True,
    limit: int | None = None,
) -> FolderRows:
    """Every entry directly in folder ``prefix`` (``""`` or ending in ``/``), all pages.

    No page is fetched once more than ``limit`` rows are in hand (whole
    pages are kept: the caller cuts). Pages are fetched one ahead of the
    parse.
    """
    query = {
        "list-type": "2",
        "prefix": prefix,
        "delimiter": "/",
        "max-keys": str(page_size),
        "encoding-type": "url",
    }
    loop = asyncio.get_running_loop()
    rows: list[Row] = []
    folders: set[str] = set()
    marker = False
    body = await _fetch(storage, query)
    while True:
        hint = next_token(body)
        ahead = None
        # Read ahead unless this page may reach the cap (a page holds at most
        # page_size rows): the request past the cap is then never made.
        if hint is not None and (limit is None or len(rows) + page_size <= limit):
            ahead = loop.create_task(_fetch(storage, {**query, "continuation-token": hint}))
        try:
            page = await asyncio.to_thread(
                parse_page, body, prefix, names_only=names_only, unique=unique
            )
        except BaseException:
            if ahead is not None:
                _forget(ahead)
            raise
        del body
        rows += page.rows
        folders.update(page.folders)
        marker = marker or page.marker
        if page.token != hint:
            if ahead is not None:
                _forget(ahead)
            raise BadListing()  # the raw bytes and the parse disagree: a garbled page
        if hint is None or (limit is not None and len(rows) > limit):
            if ahead is not None:
                _forget(ahead)
            break
        if ahead is None:
            ahead = loop.create_task(_fetch(storage, {**query, "continuation-token": hint}))
        body = await ahead
    return FolderRows(rows, marker, folders)
