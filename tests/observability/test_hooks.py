"""``[[hook]]``: real commands and a real HTTP(S) server, told about real sessions.

The command hook is ``hook_script.py``, which records what it received
(stdin, environment, the uploaded file's SHA-256 as it saw it); the URL
hook posts to an HTTP server run by the test. Hooks that hang, crash, print
megabytes, or whose URL is down or silent must leave every reply as it was
and be logged once per event; a ``before_reply`` upload hook alone may turn
a 226 into a 550, and then the file is gone.
"""

from __future__ import annotations

import ftplib
import hashlib
import http.server
import io
import json
import logging
import os
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from waiting import until

from fileferry.config import build, parse_user_spec
from fileferry.config.tables import users_from_toml
from fileferry.server.testcerts import make_test_certificates
from fileferry.server.thread import ServerThread

SCRIPT = Path(__file__).with_name("hook_script.py")


def _hook(records: Path, mode: str, on: list[str], **extra: Any) -> dict[str, Any]:
    return {"on": on, "command": [sys.executable, str(SCRIPT), str(records), mode], **extra}


def _records(directory: Path, kind: str | None = None) -> list[dict[str, Any]]:
    found = []
    for path in sorted(directory.glob("*.json")):
        record = json.loads(path.read_text())
        if kind is None or record["event"]["event"] == kind:
            found.append(record)
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def records(tmp_path: Path) -> Path:
    path = tmp_path / "records"
    path.mkdir()
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def _serve(root: Path, hooks: list[dict[str, Any]], **settings: Any) -> ServerThread:
    config = build(
        {
            "root": str(root),
            "port": 0,
            "write": True,
            "login_failure_delay": 0,
            "users": (parse_user_spec("alice:wonderland"),),
            "hooks": hooks,
            **settings,
        }
    )
    return ServerThread(config)


def _login(server: ServerThread, user: str = "alice", password: str = "wonderland") -> ftplib.FTP:
    ftp = ftplib.FTP(timeout=30)
    ftp.connect(*server.address)
    ftp.login(user, password)
    return ftp


def _hook_lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "fileferry.hooks" and r.levelno == level
    ]


# --- what a command hook receives ------------------------------------------------------


def test_a_command_hook_gets_every_event_as_json_and_environment(
    root, records, caplog, monkeypatch
):
    caplog.set_level(logging.INFO, logger="fileferry.hooks")
    monkeypatch.setenv("HOOK_TEST_SECRET", "must-not-leak")
    every = ["upload", "download", "delete", "rename", "mkdir", "rmdir", "login"]
    every += ["login-failed", "ban"]
    blob = os.urandom(100_000)
    hook = _hook(records, "ok", every, env={"IMPORT_DIR": "/srv/import"})
    with _serve(root, [hook], ban_threshold=1) as server:
        ftp = _login(server)
        assert ftp.storbinary("STOR data.bin", io.BytesIO(blob)).startswith("226")
        # Hooks run after the reply, on their own time: let it see the file before it moves.
        until(lambda: _records(records, "upload"), "the upload hook")
        got = bytearray()
        assert ftp.retrbinary("RETR data.bin", got.extend).startswith("226")
        assert ftp.mkd("sub") == "/sub"
        ftp.rename("data.bin", "sub/renamed.bin")
        ftp.delete("sub/renamed.bin")
        ftp.rmd("sub")
        ftp.quit()
        bad = ftplib.FTP(timeout=30)
        bad.connect(*server.address)
        with pytest.raises(ftplib.Error, match=r"^(530|421)"):  # 421: banned at once
            bad.login("alice", "wrong")
        bad.close()
        until(lambda: len(_records(records)) >= 9, "nine hook runs")
    by_kind = {r["event"]["event"]: r for r in _records(records)}
    assert sorted(by_kind) == sorted(every)

    upload = by_kind["upload"]
    assert upload["sha256"] == hashlib.sha256(blob).hexdigest()  # the whole file, as committed
    event = upload["event"]
    assert {k: event[k] for k in ("user", "peer", "command", "path", "size")} == {
        "user": "alice",
        "peer": "127.0.0.1",
        "command": "STOR",
        "path": "/data.bin",
        "size": len(blob),
    }
    assert event["local_path"] == str(root / "data.bin")
    assert event["time"].endswith("Z") and isinstance(event["session"], int)
    env = upload["env"]
    assert env["FILEFERRY_EVENT"] == "upload"
    assert env["FILEFERRY_EVENT_PATH"] == "/data.bin"
    assert env["FILEFERRY_EVENT_SIZE"] == str(len(blob))
    assert env["FILEFERRY_EVENT_USER"] == "alice"
    assert env["FILEFERRY_EVENT_LOCAL_PATH"] == str(root / "data.bin")
    assert env["IMPORT_DIR"] == "/srv/import"
    assert "HOOK_TEST_SECRET" not in env  # the server's environment is not passed on
    assert upload["argv"][1:] == [str(records), "ok"]

    assert by_kind["download"]["event"]["bytes"] == len(blob)
    assert by_kind["download"]["event"]["reply_code"] == 226
    assert (by_kind["rename"]["event"]["src"], by_kind["rename"]["event"]["dst"]) == (
        "/data.bin",
        "/sub/renamed.bin",
    )
    assert by_kind["delete"]["event"]["path"] == "/sub/renamed.bin"
    assert by_kind["mkdir"]["event"]["path"] == by_kind["rmdir"]["event"]["path"] == "/sub"
    assert by_kind["login"]["env"]["FILEFERRY_EVENT_ANONYMOUS"] == "false"
    assert by_kind["login-failed"]["event"]["username"] == "alice"
    assert by_kind["ban"]["event"]["client"] == "127.0.0.1"
    # Output is logged (a line per run), and no failure was.
    assert any("saw upload" in line for line in _hook_lines(caplog, logging.INFO))
    assert _hook_lines(caplog) == []


# --- before_reply: the virus scan ---------------------------------------------------


def test_a_before_reply_hook_refuses_an_infected_upload_and_removes_it(root, records):
    gate = _hook(records, "scan", ["upload"], before_reply=True, timeout=20)
    with _serve(root, [gate]) as server:
        ftp = _login(server)
        clean = os.urandom(50_000)
        assert ftp.storbinary("STOR clean.bin", io.BytesIO(clean)).startswith("226")
        with pytest.raises(ftplib.error_perm) as refused:
            ftp.storbinary("STOR bad.bin", io.BytesIO(b"xx EICAR xx" * 1000))
        # The hook's first line, without its CR/LF; not the second line.
        assert str(refused.value) == "550 INFECTED: Eicar-Test-Signature"
        assert ftp.nlst() == ["clean.bin"]
        assert ftp.voidcmd("NOOP").startswith("200")  # the session goes on
        assert ftp.storbinary("STOR again.bin", io.BytesIO(b"fine")).startswith("226")
        ftp.quit()
    assert sorted(os.listdir(root)) == ["again.bin", "clean.bin"]  # no temp file either
    assert (root / "clean.bin").read_bytes() == clean
    scanned = {r["event"]["path"]: r["sha256"] for r in _records(records)}
    assert scanned["/bad.bin"] == hashlib.sha256(b"xx EICAR xx" * 1000).hexdigest()


def test_a_before_reply_hook_that_hangs_is_a_550_and_its_process_group_is_killed(root, records):
    # A shell (it starts in milliseconds, even on a loaded machine) whose child hangs.
    hang = 'sleep 120 & echo $! > "$0/child-$$"; wait'
    gate = {"on": ["upload"], "command": ["/bin/sh", "-c", hang, str(records)]}
    gate |= {"before_reply": True, "timeout": 1}
    with _serve(root, [gate]) as server:
        ftp = _login(server)
        with pytest.raises(ftplib.error_perm) as refused:
            ftp.storbinary("STOR slow.bin", io.BytesIO(b"data"))
        assert str(refused.value) == "550 the upload check did not finish in time"
        assert ftp.nlst() == []
        ftp.quit()
    child = until(lambda: list(records.glob("child-*")), "the hook's child pid")
    pid = int(child[0].read_text())
    until(lambda: not _alive(pid), "the hook's child to be killed", timeout=10)
    assert os.listdir(root) == []


# --- hooks that fail must not matter ---------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records each POST; answers with the next scripted status (then 200)."""

    def do_POST(self) -> None:
        server: Any = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server.seen.append((self.path, dict(self.headers), body))
        status = server.statuses.pop(0) if server.statuses else 200
        reply = {5: b"busy, try later\n", 4: b"refused: not on the allowlist\n\nmore"}.get(
            status // 100, b"ok\n"
        )
        self.send_response(status)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web(request) -> Iterator[Callable[..., Any]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(context: ssl.SSLContext | None = None, statuses: tuple[int, ...] = ()) -> Any:
        server: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
        server.seen, server.statuses = [], list(statuses)
        if context is not None:
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_failing_hooks_change_no_reply_and_are_logged_once_per_event(root, records, caplog):
    caplog.set_level(logging.INFO, logger="fileferry.hooks")
    down = socket.socket()
    down.bind(("127.0.0.1", 0))
    down_port = down.getsockname()[1]
    down.close()  # nothing listens there now
    silent = socket.socket()  # accepts (the kernel's backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    hooks = [
        _hook(records, "hang", ["upload"], name="hangs", timeout=0.5),
        _hook(records, "crash", ["upload"], name="crashes"),
        _hook(records, "spew", ["upload"], name="spews", max_output=1000),
        {"on": ["upload"], "name": "down", "url": f"http://127.0.0.1:{down_port}/h",
         "retries": 1, "backoff": 0.05},
        {"on": ["upload"], "name": "silent", "timeout": 0.5, "retries": 0,
         "url": f"http://127.0.0.1:{silent.getsockname()[1]}/h"},
    ]  # fmt: skip
    try:
        with _serve(root, hooks, hook_max_running=8) as server:
            ftp = _login(server)
            for name in ("one.bin", "two.bin"):
                assert ftp.storbinary(f"STOR {name}", io.BytesIO(b"z" * 5000)).startswith("226")
                assert ftp.voidcmd("NOOP").startswith("200")
            assert sorted(ftp.nlst()) == ["one.bin", "two.bin"]

            def failures() -> list[str]:
                lines = _hook_lines(caplog)
                return lines if len(lines) >= 8 else []

            lines = until(failures, "eight failure lines")
            until(lambda: len(_hook_lines(caplog, logging.INFO)) >= 2, "the spew's output")
            assert ftp.voidcmd("NOOP").startswith("200")
            ftp.quit()
    finally:
        silent.close()
    for name, why in [
        ("hangs", "timed out after 0.5 s; process group killed"),
        ("crashes", "killed by signal 6"),
        ("down", "failed after 2 attempts: request failed"),
        ("silent", "no answer within 0.5 s"),
    ]:
        for path in ("/one.bin", "/two.bin"):
            mine = [x for x in lines if x.startswith(f"hook {name} ") and f"'{path}'" in x]
            assert len(mine) == 1, (name, path, lines)  # once per event, after all attempts
            assert why in mine[0]
    assert len(lines) == 8
    spewed = [x for x in _hook_lines(caplog, logging.INFO) if x.startswith("hook spews ")]
    assert len(spewed) == 2
    dropped = 128 * 65537 - 1000
    assert all(f"(+{dropped} bytes dropped)" in x and len(x) < 2000 for x in spewed)
    for child in records.glob("child-*"):
        pid = int(child.read_text())
        until(lambda pid=pid: not _alive(pid), "the hanging hook's child to be killed", 10)


def test_a_url_hook_posts_json_over_verified_https_with_retries(root, tmp_path, web, caplog):
    caplog.set_level(logging.DEBUG)
    certs = make_test_certificates(tmp_path / "tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert, certs.key)
    site = web(context, statuses=(503,))
    url = f"https://127.0.0.1:{site.server_address[1]}/events?token=query-secret"
    hooks = [
        {"on": ["mkdir"], "name": "trusted", "url": url, "ca_file": str(certs.ca),
         "headers": {"Authorization": "Bearer header-secret"}, "retries": 2, "backoff": 0.05},
        # The system's CAs do not know the test CA: refused, and not retried.
        {"on": ["mkdir"], "name": "untrusted", "url": url, "retries": 3, "backoff": 0.05},
    ]  # fmt: skip
    with _serve(root, hooks) as server:
        ftp = _login(server)
        assert ftp.mkd("reports") == "/reports"
        ftp.quit()
        until(lambda: len(site.seen) >= 2, "the retried POST")
        until(lambda: _hook_lines(caplog), "the untrusted hook's failure")
    assert len(site.seen) == 2  # a 503, then a 200; the untrusted hook never got through
    for path, headers, body in site.seen:
        assert path == "/events?token=query-secret"
        assert headers["Content-Type"] == "application/json"
        assert headers["Authorization"] == "Bearer header-secret"
        event = json.loads(body)
        assert (event["event"], event["path"], event["user"]) == ("mkdir", "/reports", "alice")
    [failure] = _hook_lines(caplog)
    assert failure.startswith("hook untrusted ")
    assert "TLS failed" in failure and "attempts" not in failure
    assert "secret" not in caplog.text  # neither the query's token nor the header's


def test_a_full_queue_drops_events_with_one_log_line(root, records, caplog):
    caplog.set_level(logging.INFO, logger="fileferry.hooks")
    slow = _hook(records, "hang", ["mkdir"], timeout=1)
    with _serve(root, [slow], hook_max_running=1, hook_queue=1) as server:
        ftp = _login(server)
        for i in range(6):
            ftp.mkd(f"d{i}")  # every reply comes at once, whatever the hooks do
        assert len(ftp.nlst()) == 6
        until(lambda: any("room again" in x for x in _hook_lines(caplog)), "the queue to drain")
        ftp.quit()
    full = [x for x in _hook_lines(caplog) if "hook queue full" in x]
    assert len(full) == 1
    assert any("4 hook run(s) were dropped" in x for x in _hook_lines(caplog))


def test_abor_during_a_before_reply_check_removes_the_upload(root, records):
    gate = _hook(records, "hang", ["upload"], before_reply=True, timeout=60)
    with _serve(root, [gate]) as server:
        ftp = _login(server)
        ftp.voidcmd("TYPE I")
        conn = ftp.transfercmd("STOR pending.bin")
        conn.sendall(b"p" * 10_000)
        conn.close()
        child = until(lambda: list(records.glob("child-*")), "the check to start")
        # The check is cut short: the STOR is answered 426, never 226; then ABOR's 226.
        assert ftp.abort().startswith("426")
        assert ftp.getresp().startswith("226")
        assert ftp.nlst() == []
        ftp.quit()
    pid = int(child[0].read_text())
    until(lambda: not _alive(pid), "the check's process group to be killed", timeout=10)
    assert os.listdir(root) == []


def test_a_url_can_judge_uploads_before_the_226(root, web):
    site = web(statuses=(403,))
    url = f"http://127.0.0.1:{site.server_address[1]}/check"
    gate = {"on": ["upload"], "url": url, "before_reply": True, "timeout": 10}
    with _serve(root, [gate]) as server:
        ftp = _login(server)
        with pytest.raises(ftplib.error_perm) as refused:
            ftp.storbinary("STOR first.bin", io.BytesIO(b"1"))
        assert str(refused.value) == "550 refused: not on the allowlist"
        assert ftp.storbinary("STOR second.bin", io.BytesIO(b"2")).startswith("226")
        ftp.quit()
    assert [json.loads(body)["path"] for _, _, body in site.seen] == ["/first.bin", "/second.bin"]
    assert os.listdir(root) == ["second.bin"]


def test_a_refused_upload_gives_its_bytes_back_to_the_quota(root, records):
    gate = _hook(records, "scan", ["upload"], before_reply=True, timeout=20)
    quota = users_from_toml([{"name": "q", "password": "pw", "quota_bytes": 10_000}], "test")
    with _serve(root, [gate], users=quota) as server:
        ftp = _login(server, "q", "pw")
        with pytest.raises(ftplib.error_perm, match=r"^550 INFECTED"):
            ftp.storbinary("STOR bad.bin", io.BytesIO(b"EICAR" + b"v" * 5995))
        # 6000 more bytes fit only if the refused 6000 were given back.
        assert ftp.storbinary("STOR good.bin", io.BytesIO(b"g" * 6000)).startswith("226")
        with pytest.raises(ftplib.Error, match=r"^552"):
            ftp.storbinary("STOR more.bin", io.BytesIO(b"m" * 6000))
        ftp.quit()
    assert sorted(os.listdir(root)) == ["good.bin"]
