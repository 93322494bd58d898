"""The two worked hooks of docs/hooks.md (examples/hooks/), run by a real server.

The virus scan calls ``clamdscan``; the test puts a stand-in of it first on
``PATH`` (it prints what clamdscan prints and exits as it does), so what is
tested is the example's own logic and the server's handling of its verdict.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import shutil
import sys
from pathlib import Path

import pytest
from waiting import until

from fileferry.config import build, parse_user_spec
from fileferry.server.thread import ServerThread

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "hooks"
FAKE_CLAMDSCAN = """#!/bin/sh
# clamdscan's verdicts: "FILE: OK" exit 0, "FILE: NAME FOUND" exit 1.
for last; do :; done
if grep -q EICAR "$last"; then echo "$last: Eicar-Signature FOUND"; exit 1; fi
echo "$last: OK"
"""


def _server(root: Path, hook: dict[str, object]) -> ServerThread:
    config = build(
        {
            "root": str(root),
            "port": 0,
            "users": (parse_user_spec("alice:wonderland"),),
            "hooks": [hook],
        }
    )
    return ServerThread(config)


def _wait_for(path: Path, timeout: float = 20.0) -> None:
    until(path.exists, f"{path} to appear", timeout)


def test_the_scan_example_refuses_a_virus_before_the_226(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "clamdscan").write_text(FAKE_CLAMDSCAN)
    (bin_dir / "clamdscan").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    root = tmp_path / "root"
    root.mkdir()
    script = tmp_path / "scan_upload.sh"
    shutil.copy(EXAMPLES / "scan_upload.sh", script)
    hook = {"on": ["upload"], "command": [str(script)], "before_reply": True, "timeout": 30}
    with _server(root, hook) as server:
        ftp = ftplib.FTP(timeout=30)
        ftp.connect(*server.address)
        ftp.login("alice", "wonderland")
        assert ftp.storbinary("STOR ok.txt", io.BytesIO(b"harmless")).startswith("226")
        with pytest.raises(ftplib.error_perm) as refused:
            ftp.storbinary("STOR bad.txt", io.BytesIO(b"X5O EICAR test"))
        assert str(refused.value) == "550 Upload refused: virus found (Eicar-Signature FOUND)"
        ftp.quit()
    assert sorted(os.listdir(root)) == ["ok.txt"]


def test_the_import_example_moves_finished_uploads(tmp_path):
    root, imports = tmp_path / "root", tmp_path / "import"
    root.mkdir()
    command = [sys.executable, str(EXAMPLES / "move_to_import.py"), str(imports)]
    first, second = os.urandom(70_000), os.urandom(1000)
    with _server(root, {"on": ["upload"], "command": command}) as server:
        ftp = ftplib.FTP(timeout=30)
        ftp.connect(*server.address)
        ftp.login("alice", "wonderland")
        assert ftp.storbinary("STOR orders.csv", io.BytesIO(first)).startswith("226")
        _wait_for(imports / "alice" / "orders.csv")
        assert ftp.storbinary("STOR orders.csv", io.BytesIO(second)).startswith("226")
        _wait_for(imports / "alice" / "orders.1.csv")  # the first is not overwritten
        ftp.quit()
    digest = hashlib.sha256
    assert (
        digest((imports / "alice" / "orders.csv").read_bytes()).digest() == digest(first).digest()
    )
    assert (imports / "alice" / "orders.1.csv").read_bytes() == second
    assert os.listdir(root) == []
