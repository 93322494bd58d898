"""Every permission letter, end to end with ftplib: granted it works, withheld it is 550.

Accounts come from a real SQLite user database; outcomes are checked on disk.
"""

from __future__ import annotations

import ftplib
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from accountkit import Serve, get, home_of, put

from fileferry.config import SiteExecCommand
from fileferry.users.base import ALL_PERMISSIONS, Account, FolderRule


@dataclass
class Case:
    act: Callable[[ftplib.FTP], object]
    done: Callable[[Path], bool]


def _chmod_mode(home: Path) -> int:
    return stat.S_IMODE(os.stat(home / "file.txt").st_mode)


CASES: dict[str, Case] = {
    "e": Case(lambda f: f.cwd("dir"), lambda h: True),
    "l": Case(lambda f: f.nlst(), lambda h: True),
    "r": Case(lambda f: get(f, "file.txt"), lambda h: True),
    "a": Case(
        lambda f: put(f, "file.txt", b" more", "APPE"),
        lambda h: (h / "file.txt").read_bytes() == b"hello more",
    ),
    "d": Case(lambda f: f.delete("file.txt"), lambda h: not (h / "file.txt").exists()),
    "f": Case(lambda f: f.rename("file.txt", "moved.txt"), lambda h: (h / "moved.txt").exists()),
    "m": Case(lambda f: f.mkd("newdir"), lambda h: (h / "newdir").is_dir()),
    "w": Case(lambda f: put(f, "new.txt", b"new"), lambda h: (h / "new.txt").exists()),
    "M": Case(lambda f: f.sendcmd("SITE CHMOD 600 file.txt"), lambda h: _chmod_mode(h) == 0o600),
    "T": Case(
        lambda f: f.sendcmd("MFMT 20200102030405 file.txt"),
        lambda h: int(os.stat(h / "file.txt").st_mtime) == 1577934245,
    ),
}


def _home(homes: Path) -> Path:
    home = home_of(homes, "alice")
    (home / "file.txt").write_bytes(b"hello")
    os.chmod(home / "file.txt", 0o644)
    (home / "dir").mkdir()
    (home / "dir" / "inner.txt").write_bytes(b"inner")
    return home


def _snapshot(home: Path) -> dict[str, tuple[bytes | None, int]]:
    out = {}
    for p in sorted(home.rglob("*")):
        st = os.stat(p)
        out[str(p.relative_to(home))] = (
            p.read_bytes() if p.is_file() else None,
            stat.S_IMODE(st.st_mode),
        )
    return out


@pytest.mark.parametrize("letter", list(ALL_PERMISSIONS))
def test_granted_letter_works(serve: Serve, homes: Path, letter: str) -> None:
    home = _home(homes)
    srv = serve(Account("alice", str(home), permissions=letter))
    f = srv.login("alice")
    CASES[letter].act(f)
    f.quit()
    assert CASES[letter].done(home)


@pytest.mark.parametrize("letter", list(ALL_PERMISSIONS))
def test_withheld_letter_is_550_and_changes_nothing(serve: Serve, homes: Path, letter: str) -> None:
    home = _home(homes)
    srv = serve(Account("alice", str(home), permissions=ALL_PERMISSIONS.replace(letter, "")))
    before = _snapshot(home)
    f = srv.login("alice")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        CASES[letter].act(f)
    f.quit()
    assert _snapshot(home) == before


def test_folder_overrides_the_deepest_wins(serve: Serve, homes: Path) -> None:
    home = _home(homes)
    (home / "drop").mkdir()
    (home / "drop" / "sealed").mkdir()
    rules = (FolderRule("/drop", "elw"), FolderRule("/drop/sealed", "el"))
    srv = serve(Account("alice", str(home), permissions="elr", folder_permissions=rules))
    f = srv.login("alice")
    assert get(f, "file.txt") == b"hello"
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        put(f, "top.txt", b"x")
    put(f, "drop/in.txt", b"dropped")
    assert (home / "drop" / "in.txt").read_bytes() == b"dropped"
    for refused in (
        lambda: get(f, "drop/in.txt"),  # no r in /drop
        lambda: f.delete("drop/in.txt"),
        lambda: put(f, "drop/sealed/x.txt", b"x"),  # /drop/sealed is deeper: no w
        lambda: f.rename("file.txt", "drop/file.txt"),
    ):
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            refused()
    # MLSD's perm fact shows the letters that apply in the folder listed.
    lines: list[str] = []
    f.retrlines("MLSD /drop", lines.append)
    facts = {line.split(" ", 1)[1]: line for line in lines}
    assert "perm=" in facts["in.txt"]
    perm = next(p for p in facts["in.txt"].split(";") if p.startswith("perm=")).split("=")[1]
    assert "w" in perm and "r" not in perm and "d" not in perm
    f.quit()


def test_site_exec_needs_the_x_letter(serve: Serve, homes: Path) -> None:
    home = _home(homes)
    echo = shutil.which("echo") or "/bin/echo"
    command = SiteExecCommand("hi", (echo, "hello"), ())
    srv = serve(
        Account("ops", str(home), permissions="elrX"),
        Account("plain", str(home), permissions="elr"),
        site_exec=(command,),
    )
    f = srv.login("ops")
    assert f.sendcmd("SITE EXEC hi").startswith("200-")
    f.quit()
    f = srv.login("plain")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        f.sendcmd("SITE EXEC hi")
    f.quit()


def test_site_chmod_syntax_and_limits(serve: Serve, homes: Path) -> None:
    home = _home(homes)
    srv = serve(Account("alice", str(home), permissions=ALL_PERMISSIONS))
    f = srv.login("alice")
    for bad in (
        "SITE CHMOD",
        "SITE CHMOD 755",
        "SITE CHMOD 9x9 file.txt",
        "SITE CHMOD 4755 file.txt",
    ):
        with pytest.raises(ftplib.error_perm, match=r"^50[01]"):
            f.sendcmd(bad)
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        f.sendcmd("SITE CHMOD 000 /")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        f.sendcmd("SITE CHMOD 644 missing.txt")
    assert f.sendcmd("SITE CHMOD 0640 dir/inner.txt").startswith("200")
    assert stat.S_IMODE(os.stat(home / "dir" / "inner.txt").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(home).st_mode) != 0
    f.quit()
