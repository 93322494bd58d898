"""The dashboard's bucket usage on an ``s3://`` root, against a real SeaweedFS.

The figure is counted in the background (``server/rootusage.py``) by a flat
listing of the prefix (``storage/s3usage.py``). These tests upload files of
known sizes through ftplib and read the figure back from the API and the
page; they count the listing requests that reach the store (a relay in
front of it sees every request line) to show that pages and API calls never
list; and they cut the relay to show a dead store leaves the page serving
the last figure, marked stale, or "unknown" when there never was one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ftplib
import io
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from adminkit import AdminServer, browser_login, start
from seaweed import wait_released
from tcprelay import Leg, TcpRelay
from waiting import until

from fileferry import config
from fileferry.storage.usage import Tally, Usage
from fileferry.users.fields import format_size

#: Sizes of the files uploaded: one byte, one small part, one multipart upload (two parts).
SIZES = {"a.bin": 1, "b.bin": 70_000, "sub/c.bin": 5_500_001}
LIST = b"list-type=2"
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


class Relay(TcpRelay):
    """A TCP relay in front of the store that counts listing requests and can be cut.

    A request line of ``ListObjectsV2`` carries ``list-type=2``; the count is
    of those bytes in the server-to-store direction (a tail is kept per
    connection so a token split between two reads still counts once).
    """

    def __init__(self, target: int) -> None:
        self.lists = 0
        self._tails: dict[int, bytes] = {}
        super().__init__(target)

    def seen(self, leg: Leg, data: bytes, upstream: bool) -> None:
        if not upstream:
            return
        with self.lock:
            text = self._tails.get(id(leg), b"") + data
            self.lists += text.count(LIST)
            self._tails[id(leg)] = text[-(len(LIST) - 1) :]

    def cut(self) -> None:
        """The store is gone: no new connection, and every open one is reset."""
        self.close()


@pytest.fixture
def relay(seaweed: Any) -> Iterator[Relay]:
    r = Relay(seaweed.ports["s3"])
    try:
        yield r
    finally:
        r.cut()
        # Every relayed connection to the store is closed with the relay.
        wait_released(seaweed.ports["s3"])


@pytest.fixture
def serve_bucket(tmp_path: Path, seaweed: Any) -> Iterator[Any]:
    """Start an admin server over ``s3://ferry/<fresh prefix>``; stopped at teardown."""
    started: list[AdminServer] = []

    def serve(endpoint: str, interval: float) -> tuple[AdminServer, str]:
        prefix = f"usage-{uuid.uuid4().hex[:10]}"
        workdir = tmp_path / prefix
        workdir.mkdir()
        srv = start(
            workdir,
            root=f"s3://{seaweed.bucket}/{prefix}",
            anonymous=True,
            write=True,
            admin_usage_interval=interval,
            **{**_settings(seaweed), "s3_endpoint": endpoint},
        )
        started.append(srv)
        return srv, prefix

    try:
        yield serve
    finally:
        for srv in started:
            srv.stop()


def storage_of(srv: AdminServer) -> dict[str, Any]:
    with srv.api() as api:
        reply = api.get("/api/v1/status")
    assert reply.status_code == 200, reply.text
    found: dict[str, Any] = reply.json()["storage"]
    return found


def counted(srv: AdminServer, used: int, objects: int) -> dict[str, Any]:
    """The status's storage once the background count shows ``used`` bytes in ``objects``."""
    return until(
        lambda: (s := storage_of(srv))["used"] == used and s["objects"] == objects and s,
        f"a bucket figure of {used} bytes in {objects} objects",
        timeout=20,
    )


def upload(srv: AdminServer, files: dict[str, int]) -> None:
    ftp = ftplib.FTP()
    ftp.connect(*srv.ftp, timeout=30)
    ftp.login("anonymous", "")
    try:
        for name, size in files.items():
            if "/" in name:
                with contextlib.suppress(ftplib.error_perm):
                    ftp.mkd(name.rsplit("/", 1)[0])  # a folder marker: not counted
            ftp.storbinary(f"STOR {name}", io.BytesIO(b"u" * size))
    finally:
        ftp.quit()


def test_the_api_and_the_page_show_the_bytes_and_objects_uploaded(
    serve_bucket: Any, seaweed: Any
) -> None:
    srv, prefix = serve_bucket(seaweed.endpoint, 0.2)
    empty = counted(srv, 0, 0)
    assert empty["kind"] == "bucket" and empty["state"] == "ok" and empty["total"] is None
    assert empty["location"] == f"s3://{seaweed.bucket}/{prefix}"
    # Keys beside the prefix (one that only starts with its name) are not its usage.
    for key in (f"{prefix}-sibling/x", f"{prefix}x"):
        assert seaweed.request("PUT", f"/{seaweed.bucket}/{key}", body=b"z" * 999)[0] == 200

    upload(srv, SIZES)
    total = sum(SIZES.values())
    st = counted(srv, total, len(SIZES))
    assert st["state"] == "ok" and st["complete"] is True and st["error"] is None
    assert st["interval_seconds"] == 0.2 and st["age_seconds"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", st["measured_at"])
    with srv.api() as api:
        status = api.get("/api/v1/status").json()
        assert status["disk"] is None  # the older disk-only field: not a disk
        spec = api.get("/api/v1/openapi.json").json()
    storage_schema = spec["components"]["schemas"]["Storage"]["properties"]
    assert set(st) <= set(storage_schema)

    with contextlib.closing(browser_login(srv)) as browser:
        page = browser.get("/")
    assert page.status_code == 200
    card = page.text.split('id="storage-card"', 1)[1].split("</div>", 1)[0]
    assert f'<span class="figure" id="storage-used">{format_size(total)}</span>' in card
    assert f'<span id="storage-objects">{len(SIZES)}</span> objects' in card
    assert re.search(r"as of \d\d:\d\d:\d\d UTC, <span id=\"storage-age\">\d+ s</span> ago", card)
    assert "no capacity" in card and f"s3://{seaweed.bucket}/{prefix}" in card
    assert "<progress" not in card


def test_the_dashboard_script_keeps_the_bucket_figure_current(
    serve_bucket: Any, seaweed: Any, driver: Any
) -> None:
    """In a real browser: the card shows the count, and its script follows the next ones."""
    from adminkit import ADMIN, ADMIN_PASSWORD
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    srv, _ = serve_bucket(seaweed.endpoint, 0.2)
    counted(srv, 0, 0)
    driver.delete_all_cookies()
    driver.get(srv.url + "/login")
    driver.find_element(By.ID, "name").send_keys(ADMIN)
    driver.find_element(By.ID, "password").send_keys(ADMIN_PASSWORD)
    driver.find_element(By.ID, "login").click()
    waiter = WebDriverWait(driver, 20, poll_frequency=0.05)
    waiter.until(lambda d: d.current_url == srv.url + "/", "the dashboard")
    assert driver.find_element(By.ID, "storage-objects").text == "0"

    upload(srv, SIZES)
    total = format_size(sum(SIZES.values()))

    def shown(d: Any) -> bool:
        figure = d.find_element(By.ID, "storage-used").text
        return figure == total and d.find_element(By.ID, "storage-objects").text == "3"

    waiter.until(shown, "the new figure, without a reload")
    assert driver.find_element(By.ID, "storage-card").get_attribute("data-state") == "ok"
    IMAGES.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(IMAGES / "admin-dashboard-bucket.png"))


def test_pages_and_api_calls_never_list_the_bucket(serve_bucket: Any, relay: Relay) -> None:
    srv, _ = serve_bucket(relay.endpoint, 3600)
    first = counted(srv, 0, 0)
    listed = relay.lists
    assert listed >= 1  # the count at start went through the relay
    with contextlib.closing(browser_login(srv)) as browser, srv.api() as api:
        for _ in range(10):
            assert browser.get("/").status_code == 200
            assert (
                api.get("/api/v1/status").json()["storage"]["measured_at"] == (first["measured_at"])
            )
    assert relay.lists == listed


def test_a_dead_store_keeps_the_last_figure_marked_stale(serve_bucket: Any, relay: Relay) -> None:
    srv, _ = serve_bucket(relay.endpoint, 0.2)
    upload(srv, {"kept.bin": 4321})
    before = counted(srv, 4321, 1)
    relay.cut()
    stale = until(
        lambda: (s := storage_of(srv))["state"] == "stale" and s, "a stale figure", timeout=20
    )
    assert (stale["used"], stale["objects"]) == (4321, 1)
    assert "unreachable" in stale["error"]
    assert stale["measured_at"] >= before["measured_at"]
    with contextlib.closing(browser_login(srv)) as browser:
        started = time.monotonic()
        page = browser.get("/")
        assert page.status_code == 200
        assert time.monotonic() - started < 10  # nothing on the page waits for the store
    assert "last measurement failed: Object store unreachable" in page.text
    assert format_size(4321) in page.text
    ftp = ftplib.FTP()
    ftp.connect(*srv.ftp, timeout=30)  # the FTP side still answers
    ftp.login("anonymous", "")
    assert ftp.voidcmd("NOOP").startswith("200")
    ftp.quit()


def _settings(seaweed: Any) -> dict[str, Any]:
    """The ``[s3]`` settings that reach the test store (the secret from a file, as in use)."""
    from seaweed import ACCESS_KEY, REGION, SECRET_KEY

    path = Path(seaweed.root) / "usage-secret"
    path.write_text(SECRET_KEY)
    return {
        "s3_endpoint": seaweed.endpoint,
        "s3_region": REGION,
        "s3_access_key_id": ACCESS_KEY,
        "s3_secret_access_key_file": str(path),
        "s3_allow_http": True,
    }


def _locations(seaweed: Any, endpoint: str | None = None) -> Any:
    """The S3 backend's clients for the test bucket, or for ``endpoint`` in its place."""
    from fileferry.backends.s3 import S3Locations

    cfg = config.build({"root": f"s3://{seaweed.bucket}", **_settings(seaweed)})
    if endpoint is not None:  # after the start-up probe, which wants a live store
        cfg = dataclasses.replace(cfg, s3=dataclasses.replace(cfg.s3, endpoint=endpoint))
    return S3Locations(cfg)


def test_a_store_never_reached_is_unknown_with_the_reason(seaweed: Any) -> None:
    from fileferry.server.rootusage import RootUsage
    from fileferry.webadmin import views

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    locations = _locations(seaweed, f"http://127.0.0.1:{closed}")
    usage = RootUsage(locations.storage(f"s3://{seaweed.bucket}/dead"), "s3://ferry/dead", 60)
    assert views.storage(usage.figure(), time.time())["state"] == "measuring"  # none yet

    async def once() -> None:
        await usage.measure_once()
        await usage.close()
        await locations.close()

    asyncio.run(once())
    shown = views.storage(usage.figure(), time.time())
    assert shown["state"] == "unknown" and shown["used"] is None and shown["objects"] is None
    assert shown["error"] == "Object store unreachable; try again later"


def test_the_flat_count_crosses_pages_and_stops_at_its_deadline(seaweed: Any) -> None:
    from fileferry.storage.s3usage import count_blocking

    prefix = f"pages-{uuid.uuid4().hex[:10]}"
    keys = {f"{prefix}/{i}": i + 1 for i in range(5)} | {f"{prefix}/d/": 0, f"{prefix}/d/e": 7}
    for key, size in keys.items():
        assert seaweed.request("PUT", f"/{seaweed.bucket}/{key}", body=b"p" * size)[0] == 200
    locations = _locations(seaweed)
    try:
        storage = locations.storage(f"s3://{seaweed.bucket}/{prefix}")
        stop = threading.Event()
        whole = count_blocking(storage, "/", time.monotonic() + 30, stop, page=2)
        assert whole == Tally(Usage(1 + 2 + 3 + 4 + 5 + 7, 6), complete=True)
        cut_short = count_blocking(storage, "/", time.monotonic() - 1, stop, page=2)
        assert not cut_short.complete and cut_short.usage.files <= 2
        assert storage.count_blocking("/d", time.monotonic() + 30, stop) == Tally(Usage(7, 1))
    finally:
        asyncio.run(locations.close())


def test_a_local_root_keeps_its_disk_figure(srv: AdminServer) -> None:
    with srv.api() as api:
        status = api.get("/api/v1/status").json()
    st = status["storage"]
    assert st["kind"] == "disk" and st["state"] == "ok" and st["objects"] is None
    assert 0 < st["used"] <= st["total"] and status["disk"]["total"] == st["total"]
    with contextlib.closing(browser_login(srv)) as browser:
        page = browser.get("/")
    assert page.status_code == 200 and "<progress" in page.text.split('id="storage-card"')[1]


def test_a_storage_without_a_count_of_its_own_is_walked() -> None:
    """The fallback for a backend with no flat listing: the tree walk, under the same bound."""
    from fileferry.server.rootusage import RootUsage
    from fileferry.storage.memory import MemoryStorage

    async def body() -> RootUsage:
        storage = MemoryStorage()
        await storage.mkdir("/d")
        for path, size in (("/a", 10), ("/d/b", 32)):
            upload = await storage.open_write(path)
            await upload.write(b"m" * size)
            await upload.commit()
        usage = RootUsage(storage, "memory", 60)
        await usage.measure_once()
        return usage

    figure = asyncio.run(body()).figure()
    assert (figure.used, figure.objects, figure.error) == (42, 2, None)
    assert figure.kind == "bucket" and figure.total is None and figure.complete
