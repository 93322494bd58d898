"""The account rules seen through curl: logins refused, quota 552, permissions, mounts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from accountkit import PASSWORD, Serve, home_of, no_temp_files

from fileferry.users.base import ALL_PERMISSIONS, Account, VirtualFolder

CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(
    CURL is None and os.environ.get("CI", "") in ("", "0", "false"), reason="curl not installed"
)


def curl(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    assert CURL is not None, "curl is required"
    return subprocess.run(
        [
            CURL,
            "-q",
            "--silent",
            "--show-error",
            "--verbose",
            "--noproxy",
            "*",
            "--max-time",
            "50",
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "HOME": str(cwd)},
    )


def log(r: subprocess.CompletedProcess[bytes]) -> str:
    return f"exit {r.returncode}\n{r.stderr.decode(errors='replace')}"


def test_refused_logins(serve: Serve, homes: Path, tmp_path: Path) -> None:
    srv = serve(
        Account("dora", str(home_of(homes, "dora")), disabled=True),
        Account("far", str(home_of(homes, "far")), allowed_networks=("192.0.2.0/24",)),
        Account("ok", str(home_of(homes, "ok"))),
    )
    r = curl("-u", f"dora:{PASSWORD}", f"{srv.url}/", cwd=tmp_path)
    assert r.returncode == 67, log(r)  # CURLE_LOGIN_DENIED
    assert "530 Account disabled." in r.stderr.decode(), log(r)
    r = curl("-u", f"far:{PASSWORD}", f"{srv.url}/", cwd=tmp_path)
    assert r.returncode == 67 and "530 Login not allowed" in r.stderr.decode(), log(r)
    r = curl("-u", f"ok:{PASSWORD}", f"{srv.url}/", cwd=tmp_path)
    assert r.returncode == 0, log(r)


def test_quota_552_and_nothing_kept(serve: Serve, homes: Path, tmp_path: Path) -> None:
    home = home_of(homes, "alice")
    srv = serve(Account("alice", str(home), permissions=ALL_PERMISSIONS, quota_bytes=50_000))
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    small.write_bytes(os.urandom(50_000))
    big.write_bytes(os.urandom(2_000_000))
    r = curl("-u", f"alice:{PASSWORD}", "-T", str(big), f"{srv.url}/", cwd=tmp_path)
    assert r.returncode != 0 and "552" in r.stderr.decode(), log(r)
    assert not (home / "big.bin").exists() and no_temp_files(home)
    r = curl("-u", f"alice:{PASSWORD}", "-T", str(small), f"{srv.url}/", cwd=tmp_path)
    assert r.returncode == 0, log(r)
    assert (home / "small.bin").read_bytes() == small.read_bytes()
    r = curl("-u", f"alice:{PASSWORD}", "-Q", "AVBL", f"{srv.url}/", cwd=tmp_path)
    assert "213 0" in r.stderr.decode(), log(r)


def test_permissions_and_virtual_folders(serve: Serve, homes: Path, tmp_path: Path) -> None:
    home = home_of(homes, "reader")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "doc.txt").write_bytes(b"shared doc\n")
    srv = serve(
        Account(
            "reader",
            str(home),
            permissions="elrw",
            virtual_folders=(VirtualFolder("/shared", str(shared), read_only=True),),
        )
    )
    up = tmp_path / "up.txt"
    up.write_bytes(b"upload\n")
    r = curl("-u", f"reader:{PASSWORD}", f"{srv.url}/shared/doc.txt", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == b"shared doc\n", log(r)
    r = curl("-u", f"reader:{PASSWORD}", "-T", str(up), f"{srv.url}/shared/", cwd=tmp_path)
    assert r.returncode == 25 and "550" in r.stderr.decode(), log(r)  # CURLE_UPLOAD_FAILED
    assert not (shared / "up.txt").exists()
    r = curl("-u", f"reader:{PASSWORD}", "-T", str(up), f"{srv.url}/", cwd=tmp_path)
    assert r.returncode == 0, log(r)
    assert (home / "up.txt").read_bytes() == b"upload\n"
    # No d: curl's DELE after the transfer (-Q "-DELE") is refused.
    r = curl("-u", f"reader:{PASSWORD}", "-Q", "-DELE up.txt", f"{srv.url}/", cwd=tmp_path)
    assert r.returncode != 0 and "550" in r.stderr.decode(), log(r)
    assert (home / "up.txt").exists()
