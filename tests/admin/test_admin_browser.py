"""The web admin in a real browser: Debian's headless Chromium driven by selenium.

No browser or driver is ever downloaded (this machine has no network): the
driver is Debian's ``/usr/bin/chromedriver``, named explicitly so that
Selenium Manager never runs, and ``.ci/run`` installs both packages. One
browser serves every test of the session. Each page's screenshot is saved
under ``docs/images/`` for ``docs/admin.md``.
"""

from __future__ import annotations

import ftplib
import io
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from adminkit import ADMIN, ADMIN_PASSWORD, USER, USER_PASSWORD, AdminServer, start

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
WAIT = 20


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminServer]:
    server = start(tmp_path_factory.mktemp("browser"), account={"upload_rate": 192 * 1024})
    yield server
    server.stop()


def wait(driver, condition, what: str):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The dashboard's script replaces rows while we read them: a stale row is a retry.
    waiter = WebDriverWait(
        driver, WAIT, poll_frequency=0.05, ignored_exceptions=[StaleElementReferenceException]
    )
    return waiter.until(condition, f"waiting for {what}")


def by_id(driver, element_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def shot(driver, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(IMAGES / f"admin-{name}.png"))


def log_in(driver, site: AdminServer) -> None:
    driver.get(site.url + "/login")
    by_id(driver, "name").send_keys(ADMIN)
    by_id(driver, "password").send_keys(ADMIN_PASSWORD)
    by_id(driver, "login").click()
    wait(driver, lambda d: d.current_url == site.url + "/", "the dashboard")


def test_log_in(driver, site: AdminServer):
    driver.delete_all_cookies()
    driver.get(site.url + "/")
    assert driver.current_url == site.url + "/login"  # not logged in: sent to the form
    by_id(driver, "name").send_keys(ADMIN)
    by_id(driver, "password").send_keys("not the password")
    by_id(driver, "login").click()
    wait(driver, lambda d: "Wrong name or password" in d.page_source, "the error")
    shot(driver, "login")
    log_in(driver, site)
    assert "Dashboard" in driver.title or "Dashboard" in driver.page_source
    assert driver.get_cookie("ffadmin")["httpOnly"] is True
    assert driver.get_cookie("ffadmin")["sameSite"] == "Strict"


def test_add_a_user_with_errors_next_to_the_fields(driver, site: AdminServer):
    from selenium.webdriver.common.by import By

    log_in(driver, site)
    driver.get(site.url + "/users")
    by_id(driver, "new-user").click()
    wait(driver, lambda d: d.current_url.endswith("/users/new"), "the form")
    by_id(driver, "field-name").send_keys("frank")
    by_id(driver, "field-home").send_keys(str(site.homes / "frank"))
    quota = by_id(driver, "field-quota_bytes")
    quota.clear()
    quota.send_keys("lots")
    networks = by_id(driver, "field-allowed_networks")
    networks.send_keys("10.1.2.3/8")
    driver.find_element(By.CSS_SELECTOR, 'input[name="perm"][value="w"]').click()
    by_id(driver, "save").click()
    wait(driver, lambda d: d.find_elements(By.ID, "error-quota_bytes"), "the field's error")
    assert "expected a size" in by_id(driver, "error-quota_bytes").text
    assert "host bits" in by_id(driver, "error-allowed_networks").text
    assert by_id(driver, "field-name").get_attribute("value") == "frank"  # kept as typed
    driver.execute_script(
        "arguments[0].scrollIntoView({block: 'center'})", by_id(driver, "error-quota_bytes")
    )
    shot(driver, "user-form")
    quota = by_id(driver, "field-quota_bytes")
    quota.clear()
    quota.send_keys("50M")
    networks = by_id(driver, "field-allowed_networks")
    networks.clear()
    networks.send_keys("127.0.0.0/8")
    by_id(driver, "save").click()
    shown = wait(driver, lambda d: d.find_elements(By.ID, "new-password"), "the new password")
    password = shown[0].find_element(By.TAG_NAME, "code").text
    ftp = ftplib.FTP()
    ftp.connect(*site.ftp, timeout=30)
    ftp.login("frank", password)
    ftp.storbinary("STOR hello.txt", io.BytesIO(b"hello from frank"))
    ftp.quit()
    assert (site.homes / "frank" / "hello.txt").read_bytes() == b"hello from frank"
    driver.get(site.url + "/users?q=fra")
    rows = driver.find_elements(By.CSS_SELECTOR, "#users tbody tr")
    assert len(rows) == 1 and "frank" in rows[0].text and "50.0 MiB" in rows[0].text
    driver.get(site.url + "/users")
    shot(driver, "users")


def test_the_dashboard_shows_an_upload_then_a_kick_discards_it(driver, site: AdminServer):
    from selenium.webdriver.common.by import By

    log_in(driver, site)
    ftp = ftplib.FTP()
    ftp.connect(*site.ftp, timeout=30)
    ftp.login(USER, USER_PASSWORD)
    outcome: dict[str, object] = {}

    def upload() -> None:
        try:
            ftp.storbinary("STOR big.bin", io.BytesIO(os.urandom(16 * 1024 * 1024)))
            outcome["done"] = True
        except (ftplib.Error, OSError, EOFError) as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=upload)
    worker.start()
    try:
        driver.get(site.url + "/")

        def progress(d):
            for row in d.find_elements(By.CSS_SELECTOR, "#transfers-body tr"):
                cells = row.find_elements(By.TAG_NAME, "td")
                if len(cells) == 7 and cells[3].text == "/big.bin" and int(cells[4].text) > 0:
                    return int(cells[4].text)
            return False

        first = wait(driver, progress, "the upload on the dashboard")
        # The page updates by itself (its script), without a reload.
        wait(driver, lambda d: (progress(d) or 0) > first, "the bytes to grow")
        assert by_id(driver, "sessions-count").text == "1"
        shot(driver, "dashboard")
        driver.get(site.url + "/sessions")
        row = wait(
            driver,
            lambda d: [
                r for r in d.find_elements(By.CSS_SELECTOR, "#sessions tbody tr") if USER in r.text
            ],
            "alice's session",
        )[0]
        assert "STOR" in row.text and "127.0.0.1" in row.text
        shot(driver, "sessions")
        row.find_element(By.CSS_SELECTOR, "button.danger").click()
        wait(driver, lambda d: "was disconnected" in d.page_source, "the kick's notice")
        worker.join(30)
        assert not worker.is_alive()
        assert "error" in outcome and "done" not in outcome
        assert not (site.homes / USER / "big.bin").exists()
        assert not [p for p in (site.homes / USER).iterdir() if "big" in p.name]
        assert USER not in driver.find_element(By.ID, "sessions").text
    finally:
        ftp.close()
        worker.join(30)


def test_lift_a_ban(driver, site: AdminServer):
    from selenium.webdriver.common.by import By

    log_in(driver, site)
    for _ in range(site.server.config.limits.bans.threshold):
        ftp = ftplib.FTP()
        ftp.connect(*site.ftp, timeout=30, source_address=("127.0.0.3", 0))
        with pytest.raises((ftplib.error_perm, ftplib.error_temp)):
            ftp.login(USER, "wrong")
        ftp.close()
    driver.get(site.url + "/bans")
    row = driver.find_element(By.CSS_SELECTOR, "#bans tbody tr")
    assert "127.0.0.3" in row.text and "failed logins" in row.text
    shot(driver, "bans")
    row.find_element(By.CSS_SELECTOR, "button.lift").click()
    wait(driver, lambda d: "The ban of 127.0.0.3 was lifted" in d.page_source, "the notice")
    assert "No address is banned" in driver.find_element(By.ID, "bans").text
    ftp = ftplib.FTP()
    ftp.connect(*site.ftp, timeout=30, source_address=("127.0.0.3", 0))
    ftp.login(USER, USER_PASSWORD)
    ftp.quit()


def test_pages_work_without_javascript(site: AdminServer):
    """Every page is plain HTML: the login and the pages, fetched by a client with no script."""
    from adminkit import browser_login

    client = browser_login(site)
    try:
        for path in ("/", "/sessions", "/users", "/bans", f"/users/{USER}"):
            reply = client.get(path)
            assert reply.status_code == 200, path
            assert "<table" in reply.text or "<form" in reply.text
            assert "<script" not in reply.text or 'src="/static/admin.js"' in reply.text
    finally:
        client.close()
    shutil.rmtree(site.homes / "frank", ignore_errors=True)
