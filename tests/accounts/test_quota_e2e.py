"""Quotas end to end with ftplib: the boundary, 552 and discard, exact usage across
STOR, APPE, REST+STOR, DELE, RNTO and overwrites, AVBL and SITE QUOTA, and a restart."""

from __future__ import annotations

import ftplib
import re
from pathlib import Path

import pytest
from accountkit import Serve, home_of, no_temp_files, put, refused_upload, sha256

from fileferry.users.base import ALL_PERMISSIONS, Account


def quota_account(homes: Path, quota_bytes: int = 1000, quota_files: int = 0) -> Account:
    return Account(
        "alice",
        str(home_of(homes, "alice")),
        permissions=ALL_PERMISSIONS,
        quota_bytes=quota_bytes,
        quota_files=quota_files,
    )


def avbl(f: ftplib.FTP, path: str = "") -> int:
    reply = f.sendcmd(f"AVBL {path}".strip())
    assert reply.startswith("213 ")
    return int(reply[4:])


def site_quota(f: ftplib.FTP) -> tuple[int, int]:
    text = f.sendcmd("SITE QUOTA")
    m = re.search(r"Bytes: (\d+) used", text)
    n = re.search(r"Files: (\d+) used", text)
    assert m and n, text
    return int(m[1]), int(n[1])


def test_upload_to_exactly_the_quota_then_one_byte_more(serve: Serve, homes: Path) -> None:
    account = quota_account(homes)
    home = Path(account.home)
    f = serve(account).login("alice")
    assert avbl(f) == 1000
    put(f, "a.bin", b"a" * 600)
    put(f, "b.bin", b"b" * 400)
    assert avbl(f) == 0
    assert site_quota(f) == (1000, 2)
    reply = refused_upload(f, "c.bin", b"c")
    assert reply.startswith("552"), reply
    assert not (home / "c.bin").exists()
    put(f, "empty.bin", b"")  # adds no byte: still fits
    assert (home / "empty.bin").read_bytes() == b""
    assert site_quota(f) == (1000, 3)
    assert no_temp_files(home)
    f.quit()


def test_a_big_upload_is_cut_off_discarded_and_not_counted(serve: Serve, homes: Path) -> None:
    account = quota_account(homes, quota_bytes=100_000)
    home = Path(account.home)
    f = serve(account).login("alice")
    put(f, "keep.bin", b"k" * 1000)
    reply = refused_upload(f, "big.bin", b"x" * 3_000_000)
    assert reply.startswith("552"), reply
    assert not (home / "big.bin").exists()
    assert no_temp_files(home)
    assert avbl(f) == 99_000
    # The same name, small enough, is accepted afterwards.
    put(f, "big.bin", b"y" * 99_000)
    assert avbl(f) == 0
    f.quit()


def test_overwrites_appends_and_resumed_uploads_keep_usage_exact(serve: Serve, homes: Path) -> None:
    account = quota_account(homes)
    home = Path(account.home)
    f = serve(account).login("alice")
    put(f, "a.bin", b"a" * 600)
    put(f, "a.bin", b"A" * 100)  # overwrite: 600 -> 100
    assert avbl(f) == 900
    put(f, "a.bin", b"B" * 1000)  # overwrite growing to exactly the quota
    assert avbl(f) == 0
    put(f, "a.bin", b"C" * 400)
    put(f, "a.bin", b"D" * 600, "APPE")  # 400 + 600 = 1000
    assert avbl(f) == 0
    full = (home / "a.bin").read_bytes()
    assert full == b"C" * 400 + b"D" * 600
    reply = refused_upload(f, "a.bin", b"E", "APPE")
    assert reply.startswith("552"), reply
    assert (home / "a.bin").read_bytes() == full
    # REST below the end copies the kept part beside the file until the commit,
    # and that copy is charged while in flight: at a full quota it is refused
    # before the transfer, the file untouched.
    f.sendcmd("REST 500")
    with pytest.raises(ftplib.error_perm, match=r"^552"):
        f.transfercmd("STOR a.bin")
    assert (home / "a.bin").read_bytes() == full
    put(f, "a.bin", b"C" * 400)  # 400 used: room for a 500-byte copy in flight
    # REST 300 + STOR keeps 300 bytes and adds 100: the final figure is exact.
    put(f, "a.bin", b"F" * 100, rest=300)
    assert (home / "a.bin").read_bytes() == b"C" * 300 + b"F" * 100
    assert avbl(f) == 600
    # In flight, 300 copied + 301 sent pass the 600 left.
    f.sendcmd("REST 300")
    reply = refused_upload(f, "a.bin", b"G" * 301)
    assert reply.startswith("552"), reply
    assert sha256((home / "a.bin").read_bytes()) == sha256(b"C" * 300 + b"F" * 100)
    # REST <size> + STOR appends in place: only the new bytes count.
    put(f, "a.bin", b"E" * 600, rest=400)
    assert avbl(f) == 0
    assert (home / "a.bin").read_bytes() == b"C" * 300 + b"F" * 100 + b"E" * 600
    # REST 200 + STOR of 100 truncates to 300: 700 are free again. (At a full
    # quota its 200-byte copy would be refused: make room first.)
    f.delete("a.bin")
    put(f, "a.bin", b"H" * 500)
    put(f, "a.bin", b"I" * 100, rest=200)
    assert (home / "a.bin").stat().st_size == 300
    assert avbl(f) == 700
    assert site_quota(f) == (300, 1)
    assert no_temp_files(home)
    f.quit()


def test_delete_and_rename_over_a_file_give_room_back(serve: Serve, homes: Path) -> None:
    account = quota_account(homes)
    home = Path(account.home)
    f = serve(account).login("alice")
    put(f, "x.bin", b"x" * 300)
    put(f, "y.bin", b"y" * 500)
    f.mkd("sub")
    assert avbl(f) == 200
    f.rename("x.bin", "y.bin")  # y (500) is replaced by x (300)
    assert (home / "y.bin").read_bytes() == b"x" * 300
    assert site_quota(f) == (300, 1)
    f.rename("y.bin", "sub/z.bin")  # moving within the tree changes nothing
    assert site_quota(f) == (300, 1)
    f.delete("sub/z.bin")
    assert site_quota(f) == (0, 0)
    assert avbl(f) == 1000
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        f.delete("sub/z.bin")  # a failed delete changes nothing either
    assert avbl(f) == 1000
    f.quit()


def test_file_quota_refuses_a_new_file_before_the_transfer(serve: Serve, homes: Path) -> None:
    account = quota_account(homes, quota_bytes=0, quota_files=2)
    home = Path(account.home)
    f = serve(account).login("alice")
    put(f, "1.txt", b"1")
    put(f, "2.txt", b"2")
    with pytest.raises(ftplib.error_perm, match=r"^552"):
        put(f, "3.txt", b"3")
    assert not (home / "3.txt").exists()
    put(f, "2.txt", b"two")  # replacing a file adds none
    assert "Files: 2 used of 2 (0 available)" in f.sendcmd("SITE QUOTA")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        f.sendcmd("AVBL")  # no byte quota: the room cannot be told
    f.delete("1.txt")
    put(f, "3.txt", b"3")
    assert sorted(p.name for p in home.iterdir()) == ["2.txt", "3.txt"]
    f.quit()


def test_usage_is_measured_at_start_and_again_after_a_restart(serve: Serve, homes: Path) -> None:
    account = quota_account(homes)
    home = Path(account.home)
    (home / "old").mkdir()
    (home / "old" / "one.bin").write_bytes(b"1" * 250)
    (home / "two.bin").write_bytes(b"2" * 150)
    first = serve(account)
    f = first.login("alice")
    assert site_quota(f) == (400, 2)
    put(f, "three.bin", b"3" * 100)
    f.quit()
    first.thread.stop()
    (home / "two.bin").unlink()  # changed while no server ran
    f = serve(account).login("alice")
    assert site_quota(f) == (350, 2)
    assert avbl(f) == 650
    f.quit()


def test_sessions_of_one_user_share_the_quota_while_uploads_are_in_flight(
    serve: Serve, homes: Path
) -> None:
    account = quota_account(homes)
    home = Path(account.home)
    srv = serve(account)
    a = srv.login("alice")
    b = srv.login("alice")
    conn = a.transfercmd("STOR slow.bin")
    conn.sendall(b"s" * 700)
    # Wait (on replies, not on a clock) until the server holds those 700 bytes.
    for _ in range(10_000):
        if "700 bytes so far" in a.sendcmd("STAT"):
            break
    else:
        raise AssertionError("the server never received the bytes")
    assert avbl(b) == 300  # the other session's pending upload counts
    reply = refused_upload(b, "other.bin", b"o" * 301)
    assert reply.startswith("552"), reply
    put(b, "fits.bin", b"f" * 300)
    conn.close()
    reply = a.voidresp()
    assert reply.startswith("226"), reply
    assert (home / "slow.bin").stat().st_size == 700
    assert site_quota(b) == (1000, 2)
    a.quit()
    b.quit()


def test_without_a_quota_avbl_is_550_and_site_quota_says_so(serve: Serve, homes: Path) -> None:
    home = home_of(homes, "bob")
    f = serve(Account("bob", str(home), permissions=ALL_PERMISSIONS)).login("bob")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        f.sendcmd("AVBL")
    assert "No quota" in f.sendcmd("SITE QUOTA")
    assert "AVBL" in f.sendcmd("FEAT")
    assert "QUOTA" in f.sendcmd("SITE HELP")
    f.quit()


def test_avbl_checks_its_path(serve: Serve, homes: Path) -> None:
    account = quota_account(homes)
    home = Path(account.home)
    (home / "f.txt").write_bytes(b"12345")
    (home / "d").mkdir()
    srv = serve(account, Account("reader", str(home), permissions="elr", quota_bytes=10))
    f = srv.login("alice")
    assert avbl(f, "d") == 995
    for bad in ("AVBL f.txt", "AVBL missing"):
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.sendcmd(bad)
    f.quit()
    f = srv.login("reader")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        f.sendcmd("AVBL")  # may not store anything there
    f.quit()
