"""The REST API against a real server: every endpoint, auth failures, bad input (400, never 500)."""

from __future__ import annotations

import ftplib
import hashlib
import io
import json
import threading

import httpx
import pytest
from adminkit import USER, USER_PASSWORD, AdminServer, browser_login, csrf_of
from waiting import until as wait_for

ENDPOINTS = [
    ("GET", "/api/v1/status"),
    ("GET", "/api/v1/sessions"),
    ("DELETE", "/api/v1/sessions/1"),
    ("GET", "/api/v1/transfers"),
    ("GET", "/api/v1/users"),
    ("POST", "/api/v1/users"),
    ("GET", f"/api/v1/users/{USER}"),
    ("PATCH", f"/api/v1/users/{USER}"),
    ("DELETE", f"/api/v1/users/{USER}"),
    ("POST", f"/api/v1/users/{USER}/password"),
    ("GET", "/api/v1/bans"),
    ("DELETE", "/api/v1/bans/10.9.9.9"),
]


def ftp_login(srv: AdminServer, user: str = USER, password: str = USER_PASSWORD) -> ftplib.FTP:
    ftp = ftplib.FTP()
    ftp.connect(*srv.ftp, timeout=30)
    ftp.login(user, password)
    return ftp


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_wants_a_token(srv: AdminServer, method: str, path: str):
    with httpx.Client(base_url=srv.url, timeout=30) as anonymous:
        reply = anonymous.request(method, path)
        assert reply.status_code == 401
        assert "Bearer" in reply.headers["www-authenticate"]
        assert "authentication required" in reply.json()["error"]
    with srv.api(token="ffadm_not-a-real-token") as wrong:
        assert wrong.request(method, path).status_code == 401
    with httpx.Client(
        base_url=srv.url, timeout=30, headers={"Authorization": "Basic eDp5"}
    ) as basic:
        assert basic.request(method, path).status_code == 401


def test_status_and_openapi(srv: AdminServer):
    with srv.api() as api:
        status = api.get("/api/v1/status").json()
        assert status["sessions"] >= 0 and len(status["per_minute"]) == 60
        assert status["disk"]["total"] > 0
        spec = api.get("/api/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for path in (
        "/api/v1/sessions",
        "/api/v1/users",
        "/api/v1/bans",
        "/api/v1/transfers",
        "/api/v1/status",
    ):
        assert path in spec["paths"]


def test_sessions_show_a_live_client_and_a_kick_ends_it(srv: AdminServer):
    ftp = ftp_login(srv)
    try:
        ftp.cwd("/")
        with srv.api() as api:
            mine = [s for s in api.get("/api/v1/sessions").json() if s["user"] == USER]
            assert len(mine) == 1
            session = mine[0]
            assert session["address"] == "127.0.0.1"
            assert session["tls"] == "none"
            assert session["command"] == "CWD"
            assert session["idle_seconds"] >= 0

            def idle() -> float:
                found = [s for s in api.get("/api/v1/sessions").json() if s["id"] == session["id"]]
                return found[0]["idle_seconds"]

            waited = wait_for(lambda: idle() >= 0.3 and idle(), "the idle time to grow")
            ftp.voidcmd("NOOP")
            assert idle() < waited  # heard from again
            listed = api.get("/api/v1/sessions").json()
            assert [s["command"] for s in listed if s["id"] == session["id"]] == ["NOOP"]
            assert api.delete(f"/api/v1/sessions/{session['id']}").status_code == 204
            with pytest.raises(ftplib.error_temp, match="421 Disconnected by an administrator"):
                ftp.voidcmd("NOOP")
            assert all(s["id"] != session["id"] for s in api.get("/api/v1/sessions").json())
            assert api.delete(f"/api/v1/sessions/{session['id']}").status_code == 404
            reply = api.delete("/api/v1/sessions/abc")
            assert reply.status_code == 400 and "not a number" in reply.json()["error"]
    finally:
        ftp.close()


def test_transfers_show_progress_and_a_kick_discards_the_upload(srv: AdminServer):
    with srv.api() as api:
        reply = api.patch(f"/api/v1/users/{USER}", json={"upload_rate": "256K"})
        assert reply.status_code == 200 and reply.json()["upload_rate"] == 256 * 1024
    ftp = ftp_login(srv)
    outcome: dict[str, object] = {}

    def upload() -> None:
        try:
            ftp.storbinary("STOR slow.bin", io.BytesIO(b"x" * (8 * 1024 * 1024)))
        except (ftplib.Error, OSError) as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=upload)
    worker.start()
    try:
        with srv.api() as api:
            moving = wait_for(
                lambda: [t for t in api.get("/api/v1/transfers").json() if t["bytes"] > 0],
                "the upload to show progress",
            )
            t = moving[0]
            assert (t["user"], t["path"], t["direction"], t["command"]) == (
                USER,
                "/slow.bin",
                "upload",
                "STOR",
            )
            assert t["size"] is None and t["percent"] is None
            later = wait_for(
                lambda: [
                    x
                    for x in api.get("/api/v1/transfers").json()
                    if x["bytes"] > t["bytes"] and x["rate"] > 0
                ],
                "more bytes and a rate",
            )
            # Throttled to 256 KiB/s: the rate measured between two looks says so.
            assert later[0]["rate"] < 1024 * 1024
            assert api.delete(f"/api/v1/sessions/{t['session']}").status_code == 204
        worker.join(30)
        assert not worker.is_alive()
        assert "error" in outcome  # 426 or the 421 of the closed session
        assert not (srv.homes / USER / "slow.bin").exists()
        assert [p.name for p in (srv.homes / USER).iterdir() if "slow" in p.name] == []
    finally:
        ftp.close()
        with srv.api() as api:
            api.patch(f"/api/v1/users/{USER}", json={"upload_rate": 0})


def test_add_search_change_reset_and_delete_a_user(srv: AdminServer):
    home = srv.homes / "carol"
    with srv.api() as api:
        reply = api.post(
            "/api/v1/users",
            json={
                "name": "carol",
                "home": str(home),
                "permissions": "elrw",
                "quota_bytes": "10M",
                "folder_permissions": {"/ro": "el"},
                "allowed_networks": ["127.0.0.0/8"],
                "expires": "2999-12-31",
            },
        )
        assert reply.status_code == 201, reply.text
        body = reply.json()
        password = body["password"]
        assert body["user"]["quota_bytes"] == 10 * 1024 * 1024
        assert body["user"]["folder_permissions"] == {"/ro": "el"}
        assert home.is_dir()
        ftp = ftp_login(srv, "carol", password)
        ftp.storbinary("STOR a.txt", io.BytesIO(b"hello"))
        ftp.quit()
        assert (
            hashlib.sha256((home / "a.txt").read_bytes()).hexdigest()
            == hashlib.sha256(b"hello").hexdigest()
        )
        found = api.get("/api/v1/users", params={"q": "car"}).json()
        assert [u["name"] for u in found] == ["carol"]
        assert found[0]["usage"] == {"bytes": 5, "files": 1}
        assert api.get("/api/v1/users", params={"q": "zzz"}).json() == []
        changed = api.patch("/api/v1/users/carol", json={"disabled": True, "max_sessions": 3})
        assert changed.json()["status"] == "disabled" and changed.json()["max_sessions"] == 3
        with pytest.raises(ftplib.error_perm, match="530"):
            ftp_login(srv, "carol", password)
        api.patch("/api/v1/users/carol", json={"disabled": False})
        generated = api.post("/api/v1/users/carol/password", json={}).json()["password"]
        assert generated != password
        ftp_login(srv, "carol", generated).quit()
        assert (
            api.post("/api/v1/users/carol/password", json={"password": "chosen-pw"}).status_code
            == 204
        )
        ftp_login(srv, "carol", "chosen-pw").quit()
        assert api.delete("/api/v1/users/carol").status_code == 204
        assert api.get("/api/v1/users/carol").status_code == 404
        assert (home / "a.txt").exists()  # files are kept


BAD_USERS = [
    ({"name": "dave", "home": "{home}", "quota_bytes": "10x"}, "quota_bytes", "expected a size"),
    (
        {"name": "dave", "home": "{home}", "permissions": "elrZ"},
        "permissions",
        "unknown permission",
    ),
    (
        {"name": "dave", "home": "{home}", "allowed_networks": ["10.1.2.3/8"]},
        "allowed_networks",
        "host bits",
    ),
    ({"name": "dave", "home": "{home}", "expires": "someday"}, "expires", "expected a date"),
    ({"name": "anonymous", "home": "{home}"}, "name", "reserved"),
    ({"name": "has space", "home": "{home}"}, "name", "not allowed"),
    ({"name": "a:b", "home": "{home}"}, "name", "may not contain"),
    ({"name": USER, "home": "{home}"}, "name", "already exists"),
    ({"name": "dave"}, "home", "required"),
    ({"name": "dave", "home": "{home}", "colour": "blue"}, "colour", "unknown field"),
    (
        {
            "name": "dave",
            "home": "{home}",
            "virtual_folders": [{"path": "/v", "source": "/nonexistent/x"}],
        },
        "virtual_folders",
        "not a directory",
    ),
    (
        {"name": "dave", "home": "{home}", "folder_permissions": {"relative": "el"}},
        "folder_permissions",
        "absolute path",
    ),
    ({"name": "dave", "home": "{home}", "quota_files": -1}, "quota_files", "between"),
    ({"name": "dave", "home": "{home}", "disabled": "yes"}, "disabled", "true or false"),
    ({"name": "dave", "home": "{home}", "password": 12}, "password", "expected text"),
]


@pytest.mark.parametrize(("body", "field", "message"), BAD_USERS)
def test_bad_user_input_is_a_400_naming_the_field(srv: AdminServer, body, field, message):
    body = json.loads(json.dumps(body).replace("{home}", str(srv.homes / "dave")))
    with srv.api() as api:
        reply = api.post("/api/v1/users", json=body)
        assert reply.status_code == 400, reply.text
        data = reply.json()
        assert message in data["fields"][field]
        assert message in data["error"]
        assert api.get("/api/v1/users/dave").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "content", "message"),
    [
        ("POST", "/api/v1/users", b"{not json", "not valid JSON"),
        ("POST", "/api/v1/users", b"[1, 2]", "JSON object"),
        ("POST", "/api/v1/users", b"\xff\xfe", "not valid JSON"),
        ("POST", "/api/v1/users", b'{"a": "' + b"x" * 70000 + b'"}', "at most"),
        (
            "PATCH",
            f"/api/v1/users/{USER}",
            b'{"password": "x"}',
            "POST /api/v1/users/NAME/password",
        ),
        ("PATCH", f"/api/v1/users/{USER}", b'{"name": "other"}', "cannot be renamed"),
        ("PATCH", f"/api/v1/users/{USER}", b'{"home": ""}', "expected a directory"),
        ("POST", f"/api/v1/users/{USER}/password", b'{"pass": "x"}', "unknown field"),
    ],
)
def test_bad_bodies_are_400_with_a_message(srv: AdminServer, method, path, content, message):
    with srv.api() as api:
        reply = api.request(
            method, path, content=content, headers={"content-type": "application/json"}
        )
        assert reply.status_code == 400, reply.text
        assert message in reply.json()["error"]
        assert api.get(f"/api/v1/users/{USER}").json()["home"].endswith(USER)


def test_unknown_objects_are_404(srv: AdminServer):
    with srv.api() as api:
        for method, path in (
            ("GET", "/api/v1/users/nobody"),
            ("PATCH", "/api/v1/users/nobody"),
            ("DELETE", "/api/v1/users/nobody"),
            ("POST", "/api/v1/users/nobody/password"),
            ("DELETE", "/api/v1/bans/192.0.2.1"),
            ("DELETE", "/api/v1/sessions/999999"),
        ):
            reply = api.request(method, path, json={})
            assert reply.status_code == 404, (method, path, reply.text)
            assert reply.json()["error"]


def test_bans_are_listed_and_lifted(srv: AdminServer):
    threshold = srv.server.config.limits.bans.threshold
    for _ in range(threshold):
        ftp = ftplib.FTP()
        ftp.connect(*srv.ftp, timeout=30, source_address=("127.0.0.2", 0))
        with pytest.raises((ftplib.error_perm, ftplib.error_temp)):  # 530, then the ban's 421
            ftp.login(USER, "wrong")
        ftp.close()
    with srv.api() as api:
        bans = api.get("/api/v1/bans").json()
        assert [b["address"] for b in bans] == ["127.0.0.2"]
        assert bans[0]["seconds_left"] > 0 and bans[0]["times_banned"] == 1
        assert "failed logins" in bans[0]["reason"]
        assert api.delete("/api/v1/bans/127.0.0.2").status_code == 204
        assert api.get("/api/v1/bans").json() == []
    ftp = ftplib.FTP()
    ftp.connect(*srv.ftp, timeout=30, source_address=("127.0.0.2", 0))
    ftp.login(USER, USER_PASSWORD)
    ftp.quit()


def test_the_dashboards_cookie_needs_the_csrf_header(srv: AdminServer):
    browser = browser_login(srv)
    try:
        assert browser.get("/api/v1/sessions").status_code == 200  # reads need no token
        reply = browser.post("/api/v1/users/nobody/password", json={})
        assert reply.status_code == 403 and "X-CSRF-Token" in reply.json()["error"]
        reply = browser.post(
            "/api/v1/users/nobody/password", json={}, headers={"X-CSRF-Token": "forged"}
        )
        assert reply.status_code == 403
        page = browser.get("/").text
        reply = browser.post(
            "/api/v1/users/nobody/password", json={}, headers={"X-CSRF-Token": csrf_of(page)}
        )
        assert reply.status_code == 404
    finally:
        browser.close()
