"""``--log-format json`` read line by line, and no secret in any output at any level."""

from __future__ import annotations

import ftplib
import io
import json
import re
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from obskit import Served, samples, tls_client, until, value

PASSWORD = "Sup3r-S3cret!pw"
WRONG = "Wr0ng-G8ess!pw"
ANON = "anon-S3cret@example.org"
STRAY = "Stray-S3cret!pass"
SECRETS = (PASSWORD, WRONG, ANON, STRAY)
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
HEAD = ["ts", "level", "event", "session", "peer", "user", "node"]


def _session_with_secrets(served: Served) -> None:
    f = tls_client(served.port)
    f.auth()
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        f.login("bob", WRONG)
    f.login("bob", PASSWORD)
    f.prot_p()
    f.storbinary("STOR a file.bin", io.BytesIO(b"x" * 4096))
    f.quit()
    g = served.ftp()
    with pytest.raises(ftplib.error_perm, match=r"^503"):
        g.sendcmd(f"PASS {STRAY}")  # a PASS out of turn, argument and all
    g.login("anonymous", ANON)
    g.retrbinary("RETR a file.bin", io.BytesIO().write)
    g.quit()


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_no_secret_reaches_any_output_at_debug_level(tmp_path: Path, fmt: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    xferlog = tmp_path / "xferlog"
    served = Served(
        tmp_path,
        str(root), "--port", "0", "--write", "--user", f"bob:{PASSWORD}",
        "--tls-self-signed", "--log-level", "debug", "--log-format", fmt,
        "--node-name", "node-7", "--xferlog", str(xferlog), "--metrics", "127.0.0.1:0",
        env={"FILEFERRY_LOGIN_FAILURE_DELAY": "0"},
    )  # fmt: skip
    try:
        _session_with_secrets(served)
        until(lambda: served.log.read_text().count("disconnect") >= 2, what="both sessions logged")
        url = f"http://127.0.0.1:{served.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=20) as response:
            metrics = response.read().decode()
    finally:
        assert served.stop() == 0
        rest = served.proc.stdout.read() if served.proc.stdout else ""
    outputs = {
        "stderr": served.log.read_text(),
        "stdout": served.line + rest,
        "xferlog": xferlog.read_text(),
        "metrics": metrics,
    }
    assert "transfer" in outputs["stderr"] and outputs["xferlog"].count("\n") == 2
    scraped = samples(metrics)
    # AUTH TLS and the PROT P upload's data connection.
    assert value(scraped, "fileferry_tls_handshakes_total", result="ok") == 2
    assert value(scraped, "fileferry_logins_total", result="failure") == 1
    for where, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"a password in {where}"
    if fmt == "text":
        assert " node-7 INFO fileferry.session session=" in outputs["stderr"]
        return
    lines = [json.loads(line) for line in outputs["stderr"].splitlines()]
    assert lines and all(list(line)[:7] == HEAD for line in lines)
    for line in lines:
        assert RFC3339_UTC.fullmatch(line["ts"]), line
        assert datetime.fromisoformat(line["ts"]).tzinfo == UTC
        assert line["node"] == "node-7" and line["level"] in ("debug", "info", "warning")
    events = [line for line in lines if line["event"] != "log"]
    bob = [e for e in events if e["session"] == events[0]["session"]]
    assert [e["event"] for e in bob] == [
        "connect", "tls", "login-failed", "login", "transfer", "disconnect",
    ]  # fmt: skip
    connect, tls, failed, login, transfer, _ = bob
    assert connect["user"] is None and connect["peer"] == "127.0.0.1"
    assert tls["version"].startswith("TLS")
    assert failed["username"] == "bob" and failed["user"] is None
    assert login["user"] == "bob" and login["anonymous"] is False
    assert transfer["command"] == "STOR" and transfer["path"] == "/a file.bin"
    assert (transfer["bytes"], transfer["reply_code"], transfer["direction"]) == (
        4096,
        226,
        "upload",
    )
    assert transfer["data_path"]  # how the bytes moved (a TLS pump here)
    assert isinstance(transfer["seconds"], float)
    anonymous = [e for e in events if e["user"] == "anonymous" and e["event"] == "login"]
    assert anonymous and anonymous[0]["anonymous"] is True
    others = [line for line in lines if line["event"] == "log"]
    assert others and all(o["session"] is None and "message" in o for o in others)
