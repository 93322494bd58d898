"""Mirrors against a server with coarse times and no way to set them (as vsftpd 3.0.3):
no MLSD (LIST gives minutes, or only the day for old files) and no MFMT (an upload
keeps the time it was written). A second run must copy nothing, and a file changed
since must still be copied.

The server is pyftpdlib with MLST, MLSD and MFMT switched off; it keeps MDTM and
SIZE, as vsftpd does. "When the first mirror ran" is set on the server's disk
(its files' times), not waited for.
"""

from __future__ import annotations

import calendar
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clientkit import Server, pyftpd, run_cli, sha256, tree

HOUR = 3600


@pytest.fixture(scope="module")
def vsftpd_like(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("pyftpd-coarse")
    root = base / "root"
    root.mkdir()
    with pyftpd(root, base / "server.log", extra=("--no-mlst", "--no-mfmt")) as server:
        yield server


@pytest.fixture
def srv(vsftpd_like: Server, tmp_path: Path) -> Server:
    """The module's server with a folder of its own for this test."""
    name = tmp_path.name
    (vsftpd_like.root / name).mkdir()
    return Server(
        f"{vsftpd_like.url}/{name}",
        vsftpd_like.root / name,
        vsftpd_like.user,
        vsftpd_like.password,
    )


def _mirror(srv: Server, *args: str) -> str:
    """One mirror run; returns its plan (what ``--dry-run`` shows), then carries it out."""
    plan = run_cli("mirror", "--dry-run", *args, env=srv.env)
    assert plan.returncode == 0, plan.stderr
    done = run_cli("mirror", "-q", *args, env=srv.env)
    assert done.returncode == 0, done.stderr
    return plan.stdout


def _set_times(root: Path, when: float) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (when, when))


def _copied(plan: str) -> list[str]:
    return sorted(line.split()[1] for line in plan.splitlines() if line.startswith("copy"))


def test_upload_mirror_twice_copies_nothing_then_only_what_changed(
    srv: Server, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    for i in range(6):
        (site / f"d{i % 2}").mkdir(parents=True, exist_ok=True)
        (site / f"d{i % 2}" / f"f{i}.txt").write_bytes(os.urandom(100 + i))
    # Written two hours ago, mirrored an hour ago: the server, unable to take the
    # files' times (no MFMT), shows when it received them.
    now = time.time()
    _set_times(site, now - 2 * HOUR)
    first = _mirror(srv, str(site), srv.at("site"))
    assert len(_copied(first)) == 6
    remote = srv.root / "site"
    assert tree(remote) == tree(site)
    _set_times(remote, now - HOUR)
    stamps = {p: p.stat().st_mtime_ns for p in remote.rglob("*.txt")}

    assert _copied(_mirror(srv, str(site), srv.at("site"))) == []
    assert {p: p.stat().st_mtime_ns for p in remote.rglob("*.txt")} == stamps

    # Changed since (same size, so only its time can tell): copied, and only it.
    changed = site / "d1" / "f3.txt"
    changed.write_bytes(os.urandom(103))
    assert _copied(_mirror(srv, str(site), srv.at("site"))) == ["d1/f3.txt"]
    assert sha256(remote / "d1" / "f3.txt") == sha256(changed)
    assert tree(remote) == tree(site)


def test_a_change_within_the_listings_minute_is_seen_through_mdtm(
    srv: Server, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.txt").write_bytes(b"a" * 50)
    (site / "b.txt").write_bytes(b"b" * 50)
    _set_times(site, time.time() - 2 * HOUR)
    _mirror(srv, str(site), srv.at("site"))
    # The copy was made five seconds into a minute; LIST shows only the minute.
    copied_at = (int(time.time() - HOUR) // 60) * 60 + 5
    _set_times(srv.root / "site", copied_at)
    # a.txt changed 30 s after that copy: LIST alone cannot tell, MDTM can.
    (site / "a.txt").write_bytes(b"A" * 50)
    os.utime(site / "a.txt", (copied_at + 30, copied_at + 30))
    assert _copied(_mirror(srv, str(site), srv.at("site"))) == ["a.txt"]
    assert (srv.root / "site" / "a.txt").read_bytes() == b"A" * 50


def test_download_mirror_of_old_files_copies_nothing_the_second_time(
    srv: Server, tmp_path: Path
) -> None:
    # Older than six months: LIST shows the day and the year, no time of day.
    old = calendar.timegm((2020, 3, 4, 13, 14, 15, 0, 0, 0))
    recent = time.time() - 2 * HOUR
    for name, when in (("old.bin", old), ("recent.bin", recent)):
        (srv.root / name).write_bytes(os.urandom(1000))
        os.utime(srv.root / name, (when, when))
    back = tmp_path / "back"
    first = _mirror(srv, srv.at(""), str(back))
    assert _copied(first) == ["old.bin", "recent.bin"]
    assert tree(back) == tree(srv.root)
    stamps = {p: p.stat().st_mtime_ns for p in back.iterdir()}

    assert _copied(_mirror(srv, srv.at(""), str(back))) == []
    assert {p: p.stat().st_mtime_ns for p in back.iterdir()} == stamps

    # Changed on the server since (same size): copied again.
    (srv.root / "recent.bin").write_bytes(os.urandom(1000))
    assert _copied(_mirror(srv, srv.at(""), str(back))) == ["recent.bin"]
    assert sha256(back / "recent.bin") == sha256(srv.root / "recent.bin")


def test_put_preserve_says_when_the_server_cannot_keep_the_time(
    srv: Server, tmp_path: Path
) -> None:
    source = tmp_path / "f.txt"
    source.write_bytes(b"f" * 10)
    os.utime(source, (1_600_000_000, 1_600_000_000))
    done = run_cli("put", "-p", str(source), srv.at("f.txt"), env=srv.env)
    assert done.returncode == 0, done.stderr
    assert "MFMT" in done.stderr and "time" in done.stderr
    assert (srv.root / "f.txt").read_bytes() == b"f" * 10
