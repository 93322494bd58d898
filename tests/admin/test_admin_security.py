"""The admin's security rules, each against a real listener: cookies, CSRF, CSP, bans, logs."""

from __future__ import annotations

import ftplib
import logging
import re
import ssl
from pathlib import Path

import httpx
import pytest
from adminkit import (
    ADMIN,
    ADMIN_PASSWORD,
    USER,
    USER_PASSWORD,
    AdminServer,
    browser_login,
    csrf_of,
    start,
)

from fileferry.server.tls import make_self_signed

PAGES = ["/", "/sessions", "/users", "/users/new", f"/users/{USER}", "/bans"]


def test_no_administrator_means_every_request_is_refused(tmp_path: Path):
    srv = start(tmp_path, admins=False)
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            for path in (
                "/",
                "/login",
                "/api/v1/status",
                "/api/v1/openapi.json",
                "/static/admin.js",
            ):
                reply = client.get(path)
                assert reply.status_code == 503, path
                assert f"fileferry admin add NAME --db {srv.db}" in reply.text
                assert "default-src 'none'" in reply.headers["content-security-policy"]
            reply = client.post("/login", data={"name": ADMIN, "password": ADMIN_PASSWORD})
            assert reply.status_code == 503
    finally:
        srv.stop()


def test_the_session_cookie_is_httponly_and_samesite_strict(srv: AdminServer):
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        page = client.get("/login")
        pre = page.headers["set-cookie"]
        assert "HttpOnly" in pre and "SameSite=strict" in pre and "Secure" not in pre
        reply = client.post(
            "/login", data={"name": ADMIN, "password": ADMIN_PASSWORD, "csrf": csrf_of(page.text)}
        )
        assert reply.status_code == 303
        cookie = next(c for c in reply.headers.get_list("set-cookie") if c.startswith("ffadmin="))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back


def test_under_https_the_cookie_is_secure_with_the_ftps_certificate(tmp_path: Path):
    cert = make_self_signed(["127.0.0.1"])
    srv = start(tmp_path, tls_cert=cert.cert, tls_key=cert.key)
    try:
        assert srv.url.startswith("https://")
        context = ssl.create_default_context(cafile=cert.cert)
        with httpx.Client(base_url=srv.url, timeout=30, verify=context) as client:
            page = client.get("/login")
            assert page.status_code == 200
            assert "max-age" in page.headers["strict-transport-security"]
            reply = client.post(
                "/login",
                data={"name": ADMIN, "password": ADMIN_PASSWORD, "csrf": csrf_of(page.text)},
            )
            assert reply.status_code == 303
            cookie = next(c for c in reply.headers.get_list("set-cookie") if "ffadmin=" in c)
            assert cookie.startswith("__Host-ffadmin=")
            assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
            assert client.get("/").status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(srv.url.replace("https://", "http://") + "/login", timeout=10)
    finally:
        srv.stop()
        import shutil

        shutil.rmtree(cert.directory, ignore_errors=True)


def test_pages_need_a_login(srv: AdminServer):
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        for path in PAGES:
            reply = client.get(path)
            assert reply.status_code == 303 and reply.headers["location"] == "/login"
        forged = client.post("/users/new", data={"name": "mallory", "home": "/tmp/m"})
        assert forged.status_code == 303
    with srv.api() as api:
        assert api.get("/api/v1/users/mallory").status_code == 404


def test_every_page_has_a_strict_csp_and_every_form_a_csrf_token(srv: AdminServer):
    browser = browser_login(srv)
    try:
        for path in PAGES:
            reply = browser.get(path)
            assert reply.status_code == 200, path
            csp = reply.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "script-src 'self'" in csp
            assert "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
            assert reply.headers["x-content-type-options"] == "nosniff"
            assert reply.headers["cache-control"] == "no-store"
            html = reply.text
            assert "<script>" not in html and " style=" not in html and "onclick" not in html
            forms = re.findall(r"<form[^>]*method=\"post\"[^>]*>(.*?)</form>", html, re.S)
            assert forms, path
            for form in forms:
                assert re.search(r'name="csrf" value="[^"]{20,}"', form), (path, form[:200])
    finally:
        browser.close()


def test_a_form_without_its_csrf_token_does_nothing(srv: AdminServer):
    browser = browser_login(srv)
    try:
        for data in ({}, {"csrf": "forged"}):
            reply = browser.post(f"/users/{USER}/disable", data=data)
            assert reply.status_code == 403
            assert "security token" in reply.text
        with srv.api() as api:
            assert api.get(f"/api/v1/users/{USER}").json()["status"] == "enabled"
        page = browser.get(f"/users/{USER}").text
        reply = browser.post(f"/users/{USER}/disable", data={"csrf": csrf_of(page)})
        assert reply.status_code == 303
        with srv.api() as api:
            assert api.get(f"/api/v1/users/{USER}").json()["status"] == "disabled"
            api.patch(f"/api/v1/users/{USER}", json={"disabled": False})
        # The login form too: no token bound to the pre-login cookie, no login.
        with httpx.Client(base_url=srv.url, timeout=30) as fresh:
            reply = fresh.post("/login", data={"name": ADMIN, "password": ADMIN_PASSWORD})
            assert reply.status_code == 403
            assert not [c for c in reply.headers.get_list("set-cookie") if c.startswith("ffadmin=")]
    finally:
        browser.close()


def test_logout_ends_the_session(srv: AdminServer):
    browser = browser_login(srv)
    try:
        csrf = csrf_of(browser.get("/").text)
        assert browser.post("/logout", data={"csrf": csrf}).status_code == 303
        assert browser.get("/").status_code == 303
        assert browser.get("/api/v1/sessions").status_code == 401
    finally:
        browser.close()


def test_failed_admin_logins_are_banned_by_the_ftp_defender(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, logger="fileferry")
    srv = start(tmp_path, ban_threshold=3)
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            for _ in range(3):
                page = client.get("/login")
                reply = client.post(
                    "/login", data={"name": ADMIN, "password": "guess", "csrf": csrf_of(page.text)}
                )
                assert reply.status_code == 401 and "Wrong name or password" in reply.text
            page = client.get("/login")
            reply = client.post(
                "/login",
                data={"name": ADMIN, "password": ADMIN_PASSWORD, "csrf": csrf_of(page.text)},
            )
            assert reply.status_code == 429 and "Too many failed logins" in reply.text
            assert (
                client.get(
                    "/api/v1/status", headers={"Authorization": f"Bearer {srv.token}"}
                ).status_code
                == 401
            )
        # The same ban holds for FTP from that address.
        ftp = ftplib.FTP()
        with pytest.raises((ftplib.error_temp, EOFError, ConnectionError)):
            ftp.connect(*srv.ftp, timeout=30)
            ftp.login(USER, USER_PASSWORD)
        ftp.close()
        assert [b.key for b in srv.server.app.limits.bans.bans()] == ["127.0.0.1"]
        assert srv.server.app.limits.bans.lift("127.0.0.1")
        with srv.api() as api:
            status = api.get("/api/v1/status").json()
            assert status["failed_logins_last_hour"] >= 3
    finally:
        srv.stop()
    text = caplog.text
    assert "admin login failed from 127.0.0.1 for 'root'" in text
    assert "guess" not in text and ADMIN_PASSWORD not in text


def test_actions_are_logged_with_the_admins_name_and_no_secret(srv: AdminServer, caplog):
    caplog.set_level(logging.INFO, logger="fileferry")
    browser = browser_login(srv)
    try:
        csrf = csrf_of(browser.get("/users/new").text)
        reply = browser.post(
            "/users/new",
            data={
                "csrf": csrf,
                "name": "erin",
                "home": str(srv.homes / "erin"),
                "perm": ["e", "l"],
            },
        )
        assert reply.status_code == 200
        shown = re.search(r"shown only this once: <code>([^<]+)</code>", reply.text)
        assert shown, "a generated password is shown once"
        password = shown.group(1)
        again = browser.get("/users/erin").text
        assert password not in again
        session_cookie = browser.cookies.get("ffadmin")
        with srv.api() as api:
            api.delete("/api/v1/users/erin")
            assert (
                api.post(
                    f"/api/v1/users/{USER}/password", json={"password": USER_PASSWORD}
                ).status_code
                == 204
            )
            for path in ("/api/v1/users", "/api/v1/status", "/api/v1/sessions"):
                body = api.get(path).text
                assert "$argon2" not in body and "password_hash" not in body
        for path in PAGES:
            assert "$argon2" not in browser.get(path).text
    finally:
        browser.close()
    text = caplog.text
    assert "admin=root logged in from 127.0.0.1" in text
    assert "admin=root added user erin" in text
    assert "admin=root deleted user erin" in text
    assert f"admin=root reset the password of user {USER}" in text
    for secret in (password, USER_PASSWORD, ADMIN_PASSWORD, srv.token, session_cookie):
        assert secret and secret not in text


def test_a_password_change_or_deletion_ends_web_sessions(tmp_path: Path, monkeypatch):
    import asyncio

    from fileferry.users.passwords import hash_password
    from fileferry.users.sqlite import SQLiteUserStore
    from fileferry.webadmin import auth

    monkeypatch.setattr(auth, "RECHECK", 0.0)  # look the administrator up on every request
    srv = start(tmp_path)

    async def change(action: str) -> None:
        store = SQLiteUserStore(srv.db)  # another connection, as `fileferry admin` has
        try:
            if action == "passwd":
                await store.set_admin_password(ADMIN, hash_password("a new one"))
            else:
                await store.delete_admin(ADMIN)
        finally:
            await store.close()

    try:
        browser = browser_login(srv)
        assert browser.get("/").status_code == 200
        asyncio.run(change("passwd"))
        assert browser.get("/").status_code == 303  # sent to log in again
        browser.close()
        browser = browser_login(srv, password="a new one")
        assert browser.get("/sessions").status_code == 200
        asyncio.run(change("del"))
        assert browser.get("/sessions").status_code in (303, 503)
        browser.close()
    finally:
        srv.stop()
