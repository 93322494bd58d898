"""Listing pages read by the fast scanner: exact names, folders, page joins, garbled pages.

The scanner (``storage/s3listing.py``) reads a ``ListObjectsV2`` page with
a few ``find`` per key and leaves anything unusual to ``xml.etree``; here
both readings are held to the same rows, the rows a real SeaweedFS gives
are held to the names that were written (escaped, encoded, unicode, folder
markers beside implied folders, a page boundary right after a marker), and
a page the store garbles is a 451 that leaves the server serving. The
garbled pages come from a tiny HTTP server on a loopback socket, because
SeaweedFS cannot be made to send them.
"""

from __future__ import annotations

import asyncio
import datetime
import ftplib
import http.server
import urllib.parse
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from s3kit import in_process_storage, serving

from fileferry import config
from fileferry.errors import NotFound
from fileferry.protocol.listing import DEFAULT_FACTS, ListingRenderer
from fileferry.server.thread import ServerThread
from fileferry.storage import s3listing, s3tree
from fileferry.storage.base import Storage
from fileferry.storage.s3listing import BadListing, parse_page
from fileferry.storage.s3paths import unique_of

NOW = 1_800_000_000.0
#: Names that need care: XML-escaped, URL-encoded, plus/space confusable, not ASCII,
#: and ones that sort between a folder ``a`` and its key ``a/`` (``.`` and `` `` < ``/``).
ODD = ["a b.txt", "a+b.txt", "100%.txt", "é ü.txt", "semi;colon", "x&y<z>.txt", "a.txt", "a-"]


async def _put_all(storage: Any, keys: list[str]) -> None:
    import obstore

    gate = asyncio.Semaphore(32)

    async def put(key: str) -> None:
        async with gate:
            await obstore.put_async(storage.store, key, b"y" * (len(key) % 5))

    await asyncio.gather(*(put(k) for k in keys))


def _render(fmt: str, cap: int | None = None) -> ListingRenderer:
    return ListingRenderer(fmt, NOW, DEFAULT_FACTS, "elradfmw", cap)


# -- on SeaweedFS ------------------------------------------------------------------


def test_rendered_listings_are_exact_across_pages(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """LIST, NLST, MLSD over 3-key pages: every name back as written, folders once, sorted."""
    monkeypatch.setattr(s3tree, "LIST_PAGE", 3)
    prefix = s3.prefix_for_test
    files = [*ODD, *(f"n{i:02d}" for i in range(12))]
    keys = [f"{prefix}/dir/{n}" for n in files]
    keys += [f"{prefix}/dir/implied/x", f"{prefix}/dir/a/inside", f"{prefix}/dir/sp ace/y"]
    keys += [f"{prefix}/dir/x&y<z>/inner", f"{prefix}/dirty/not-in-dir"]

    async def body() -> dict[str, Any]:
        await _put_all(s3, keys)
        await s3.mkdir("/dir/marked")  # marker only: an empty folder
        # A marker beside keys under it (mkdir refuses: the folder exists): still one folder.
        s3._check(await s3._call("PUT", f"{prefix}/dir/implied/"), 200)
        out: dict[str, Any] = {}
        for fmt in ("LIST", "NLST", "MLSD"):
            for cap in (None, 5):
                limit = None if cap is None else cap + 1
                out[fmt, cap] = (
                    await s3.list_rendered("/dir", _render(fmt, cap), limit),
                    await Storage.list_rendered(s3, "/dir", _render(fmt, cap), limit),
                )
        out["infos"] = await s3.list("/dir")
        return out

    got = asyncio.run(body())
    folders = ["implied", "a", "sp ace", "x&y<z>", "marked"]
    want = sorted([*files, *folders])  # the folder "a" before "a b.txt", unlike its key "a/"
    for (fmt, cap), (fast, generic) in ((k, v) for k, v in got.items() if k != "infos"):
        assert fast == generic, (fmt, cap)
        if cap is None:
            assert (fast.count, fast.truncated) == (len(want), False)
        else:
            assert (fast.count, fast.truncated) == (cap, True)
    names = got["NLST", None][0].payload.decode().split("\r\n")[:-1]
    assert names == want
    kinds = {}
    for line in got["MLSD", None][0].payload.decode().split("\r\n")[:-1]:
        facts, _, name = line.partition(" ")
        fields = dict(f.split("=", 1) for f in facts.rstrip(";").split(";"))
        kinds[name] = (fields["type"], int(fields["size"]), fields["unique"])
    for n in files:
        key = f"{prefix}/dir/{n}"
        assert kinds[n] == ("file", len(key) % 5, unique_of(key, "f")), n
    for d in folders:
        assert kinds[d] == ("dir", 0, unique_of(f"{prefix}/dir/{d}/", "d")), d
    listed = got["LIST", None][0].payload.decode().split("\r\n")[:-1]
    assert [line.split(None, 8)[8] for line in listed] == want
    assert {i.name for i in got["infos"]} == set(want)


@pytest.mark.parametrize("page", [2, 3])
def test_pages_joined_after_a_marker(s3: Any, monkeypatch: pytest.MonkeyPatch, page: int) -> None:
    """The folder's own marker and one or two keys a page, the rest after it.

    (Not one key a page: SeaweedFS answers a page holding only the folder's
    marker with ``IsTruncated=false``. The marker alone on a page is in
    :func:`test_garbled_page_is_451_and_the_server_keeps_serving`.)
    """
    monkeypatch.setattr(s3tree, "LIST_PAGE", page)
    prefix = s3.prefix_for_test

    async def body() -> tuple[Any, ...]:
        await s3.mkdir("/m")
        await s3.mkdir("/m/sub")
        await _put_all(s3, [f"{prefix}/m/sub/deep", f"{prefix}/m/0", f"{prefix}/m/z z"])
        await s3.mkdir("/empty")
        await _put_all(s3, [f"{prefix}/implied/only"])
        m = await s3.list_rendered("/m", _render("NLST"))
        empty = await s3.list_rendered("/empty", _render("MLSD"))
        implied = await s3.list("/implied")
        with pytest.raises(NotFound):
            await s3.list_rendered("/nothing", _render("LIST"))
        root = await s3.list_rendered("/", _render("NLST"))
        return m, empty, implied, root

    m, empty, implied, root = asyncio.run(body())
    assert m.payload == b"0\r\nsub\r\nz z\r\n"
    assert (empty.payload, empty.count) == (b"", 0)
    size = len(f"{prefix}/implied/only") % 5
    assert [(i.name, i.is_dir, i.size) for i in implied] == [("only", False, size)]
    assert root.payload == b"empty\r\nimplied\r\nm\r\n"


# -- the page reader on its own -----------------------------------------------------

_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


def _page(
    contents: list[tuple[str, int, str]],
    prefixes: list[str],
    *,
    url: bool,
    token: str | None = None,
    ns: bool = True,
) -> bytes:
    xmlns = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"' if ns else ""

    def esc(text: str) -> str:
        text = urllib.parse.quote_plus(text, safe="/") if url else text
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    parts = [f"{_HEAD}<ListBucketResult{xmlns}><Name>b</Name><Prefix>p/</Prefix>"]
    parts.append(f"<IsTruncated>{'true' if token else 'false'}</IsTruncated>")
    for key, size, when in contents:
        parts.append(
            f"<Contents><Key>{esc(key)}</Key><LastModified>{when}</LastModified>"
            f"<ETag>&quot;abc&quot;</ETag><Size>{size}</Size>"
            "<Owner><ID>o</ID></Owner><StorageClass>STANDARD</StorageClass></Contents>"
        )
    for p in prefixes:
        parts.append(f"<CommonPrefixes><Prefix>{esc(p)}</Prefix></CommonPrefixes>")
    if token:
        token = token.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        parts.append(f"<NextContinuationToken>{token}</NextContinuationToken>")
    if url:
        parts.append("<EncodingType>url</EncodingType>")
    parts.append("</ListBucketResult>")
    return "".join(parts).encode()


def _iso(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


STAMPS = [
    "2026-12-03T15:36:00Z",
    "2026-12-03T15:36:00.000Z",
    "2009-10-12T17:50:30.123Z",
    "1999-12-31T23:59:59.999Z",
    "2024-02-29T00:00:01.001Z",
    "2038-01-19T03:14:08.500Z",
]


@pytest.mark.parametrize("url", [True, False])
@pytest.mark.parametrize("ns", [True, False])
def test_scanner_and_tree_read_pages_alike(url: bool, ns: bool) -> None:
    contents = [("p/", 0, STAMPS[0])]
    contents += [(f"p/{n}", i, STAMPS[i % len(STAMPS)]) for i, n in enumerate(ODD)]
    contents += [("p/quote\"'s", 7, STAMPS[2]), ("p/tab\tand\u2028sep", 8, STAMPS[3])]
    body = _page(contents, ["p/d/", "p/x&y<z>/", "p/é/"], url=url, token="t&k<n>", ns=ns)
    fast = parse_page(body, "p/")
    tree = s3listing._tree_page(body, "p/", False, True)
    assert fast == tree
    assert fast.marker and fast.token == "t&k<n>"
    assert fast.folders == ["d", "x&y<z>", "é"]
    files = [r for r in fast.rows if not r[1]]
    assert [r[0] for r in files] == [*ODD, "quote\"'s", "tab\tand\u2028sep"]
    assert [r[3] for r in files[: len(ODD)]] == [
        _iso(STAMPS[i % len(STAMPS)]) for i in range(len(ODD))
    ]
    assert files[0][5] == unique_of("p/a b.txt", "f")
    names = parse_page(body, "p/", names_only=True, unique=False)
    assert [r[0] for r in names.rows] == [r[0] for r in fast.rows]
    assert all(r[2:4] == (0, 0.0) for r in names.rows)
    assert all(r[5] is None for r in names.rows)


def test_a_file_yields_to_a_folder_of_its_name() -> None:
    """Keys ``p/a`` and ``p/a/x`` (possible on S3): one entry ``a``, the folder, as stat says."""
    body = _page([("p/a", 1, STAMPS[0]), ("p/a b", 2, STAMPS[0])], ["p/a/"], url=True)
    page = parse_page(body, "p/")
    found = s3listing.FolderRows(page.rows, page.marker, set(page.folders))
    assert [(r[0], r[1]) for r in found.entries()] == [("a b", False), ("a", True)]


def test_unusual_markup_goes_to_the_exact_parser() -> None:
    body = _page([("p/k", 1, STAMPS[1])], [], url=False).replace(
        b"<Key>p/k</Key>", b"<Key><![CDATA[p/k&<]]></Key><!-- a comment -->"
    )
    page = parse_page(body, "p/")
    assert [r[0] for r in page.rows] == ["k&<"]


@pytest.mark.parametrize(
    "garble",
    [
        lambda b: b[: len(b) // 2],  # cut off mid-document
        lambda b: b[:-5],  # the closing tag cut
        lambda b: b.replace(b"</Contents>", b"", 1),  # unbalanced
        lambda b: b.replace(b"<Key>p/a", b"<Key>q/a", 1),  # a key outside the folder
        lambda b: b.replace(b"&amp;", b"&bogus;", 1),  # an entity XML does not have
        lambda b: b.replace(b"&amp;", b"&#0;", 1),  # a character XML cannot carry
        lambda b: b.replace(b"&amp;", b"&#xD800;", 1),  # half a surrogate pair
        lambda b: b.replace(b"p/a", b"p/\xff\xfe", 1),  # not UTF-8
        lambda b: b"<html>Bad Gateway</html>",
        lambda b: b"",
    ],
)
def test_garbled_pages_are_refused(garble: Any) -> None:
    body = garble(_page([(f"p/{n}", 1, STAMPS[0]) for n in ODD], ["p/d/"], url=False))
    with pytest.raises(BadListing) as info:
        parse_page(body, "p/")
    assert info.value.reply_code == 451


# -- a store that garbles its pages -------------------------------------------------


class _Garbling(http.server.BaseHTTPRequestHandler):
    """Three listing pages of folder ``p/``; ``mode`` garbles the first or the last.

    Page one holds only the folder's own marker, so a page boundary falls
    right between the marker and its contents.
    """

    mode = "cut"
    PAGES: ClassVar[dict[str | None, bytes]] = {
        None: _page([("p/", 0, STAMPS[0])], [], url=True, token="two"),
        "two": _page(
            [(f"p/k{i}", i, STAMPS[2]) for i in range(3)], ["p/sub/"], url=True, token="3"
        ),
        "3": _page([("p/k9", 9, STAMPS[3])], [], url=True),
    }

    #: The continuation token of every page asked for (``None``: the first).
    asked: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        token = query.get("continuation-token", [None])[0]
        self.asked.append(token)
        body = self.PAGES[token]
        if self.mode == "cut" and token == "3":
            body = body[: len(body) - 40]
        elif self.mode == "first" and token is None:
            body = body[:100]
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def garbling() -> Iterator[str]:
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbling)) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}"


def test_garbled_page_is_451_and_the_server_keeps_serving(seaweed: Any, garbling: str) -> None:
    env = {**seaweed.env(), "AWS_ENDPOINT_URL": garbling}
    port = urllib.parse.urlsplit(garbling).port or 0
    cfg = config.build({"root": str(seaweed.root), "port": 0, "login_failure_delay": 0})
    with (
        in_process_storage(env, "s3://bucket/p", port) as storage,
        ServerThread(cfg, storage_for=lambda _account: storage) as server,
    ):
        ftp = ftplib.FTP(timeout=30)
        ftp.connect(*server.address)
        ftp.login()
        for mode in ("cut", "first"):  # the read-ahead page, then the first page
            _Garbling.mode = mode
            for cmd in ("LIST /", "NLST /", "MLSD /"):
                with pytest.raises(ftplib.error_temp) as info:
                    ftp.retrlines(cmd, lambda _line: None)
                assert str(info.value) == f"451 {BadListing.reply_text}", cmd
                assert ftp.sendcmd("NOOP").startswith("200")
        _Garbling.mode = "fine"
        names: list[str] = []
        ftp.retrlines("NLST /", names.append)
        assert names == ["k0", "k1", "k2", "k9", "sub"]
        ftp.quit()


def test_no_page_is_asked_for_past_the_cap(seaweed: Any, garbling: str) -> None:
    """A capped listing stops paging once it has enough rows, read-ahead included."""
    env = {**seaweed.env(), "AWS_ENDPOINT_URL": garbling}
    port = urllib.parse.urlsplit(garbling).port or 0
    _Garbling.mode = "fine"

    async def listing(storage: Any, cap: int | None) -> Any:
        _Garbling.asked.clear()
        return await storage.list_rendered(
            "/", _render("NLST", cap), None if cap is None else cap + 1
        )

    with in_process_storage(env, "s3://bucket/p", port) as storage:
        capped = asyncio.run(listing(storage, 2))
        assert (capped.payload, capped.count, capped.truncated) == (b"k0\r\nk1\r\n", 2, True)
        assert _Garbling.asked == [None, "two"]  # page "3" never asked for
        whole = asyncio.run(listing(storage, None))
        assert whole.payload == b"k0\r\nk1\r\nk2\r\nk9\r\nsub\r\n"
        assert _Garbling.asked == [None, "two", "3"]


@pytest.mark.parametrize("page", [2, 3])
def test_folder_rename_moves_keys_past_a_page_ending_on_a_marker(
    s3: Any, monkeypatch: pytest.MonkeyPatch, page: int
) -> None:
    """A full page that ends on ``b/`` says ``IsTruncated`` false on SeaweedFS: the keys
    inside ``b/`` must still be moved, not left behind under the old name."""
    monkeypatch.setattr(s3tree, "KEYS_PAGE", page)
    prefix = s3.prefix_for_test
    inner = [f"src/{'a' * i}" for i in range(1, page)]  # the page fills up to the marker
    keys = [f"{prefix}/{k}" for k in [*inner, "src/b/c", "src/b/d/e", "src/z"]]

    async def body() -> list[str]:
        import obstore

        await _put_all(s3, keys)
        s3._check(await s3._call("PUT", f"{prefix}/src/"), 200)
        s3._check(await s3._call("PUT", f"{prefix}/src/b/"), 200)
        await s3.rename("/src", "/dst")
        listed = await obstore.list(s3.store, prefix=f"{prefix}/").collect_async()
        return sorted(item["path"] for item in listed)

    left = asyncio.run(body())
    moved = [f"{prefix}/dst/{k.removeprefix('src/')}" for k in [*inner, "src/b/c", "src/b/d/e"]]
    assert not [k for k in left if k.startswith(f"{prefix}/src")], left
    assert set(moved) | {f"{prefix}/dst/z"} <= set(left)
