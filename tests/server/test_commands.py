"""Control-connection commands end to end with ftplib: replies, listings, files on disk."""

from __future__ import annotations

import ftplib
import io
import os
import re
import time
from pathlib import Path

import pytest
from serverkit import connect

LS_LINE = re.compile(
    r"^(?P<mode>[-dl][rwxsStT-]{9})\s+\d+\s+\S+\s+\S+\s+(?P<size>\d+)\s+"
    r"(?P<month>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?P<when>\d{2}:\d{2}|\d{4})\s(?P<name>.+)$"
)


def listing(ftp: ftplib.FTP, *args: str) -> dict[str, re.Match[str]]:
    lines: list[str] = []
    ftp.retrlines(" ".join(("LIST", *args)), lines.append)
    parsed = {}
    for line in lines:
        m = LS_LINE.match(line)
        assert m, f"unparseable LIST line: {line!r}"
        parsed[m["name"]] = m
    return parsed


def test_greeting_syst_noop_and_quit(server) -> None:
    f = connect(server)
    assert f.getwelcome().startswith("220")
    assert f.sendcmd("SYST") == "215 UNIX Type: L8"
    assert f.sendcmd("NOOP").startswith("200")
    assert f.quit().startswith("221")


def test_login_errors_and_anonymous(server) -> None:
    f = connect(server)
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        f.login("alice", "wrong")
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        f.login("nobody", "secret")
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        f.sendcmd("PWD")
    assert f.login("anonymous", "guest@").startswith("230")
    assert f.pwd() == "/"
    f.quit()


def test_feat_advertises_what_works(ftp) -> None:
    lines = ftp.sendcmd("FEAT").splitlines()
    assert lines[0].startswith("211-") and lines[-1].startswith("211 ")
    feats = {line.strip().split(" ")[0] for line in lines[1:-1]}
    assert {"EPRT", "EPSV", "MDTM", "MFMT", "MLST", "REST", "SIZE", "TVFS", "UTF8"} <= feats
    assert ftp.sendcmd("OPTS UTF8 ON").startswith("200")
    assert ftp.sendcmd("OPTS MLST type;size;").startswith("200 MLST OPTS type;size;")


def test_help_site_help_acct_smnt_allo(ftp) -> None:
    assert ftp.sendcmd("HELP").startswith("214")
    assert "RETR" in ftp.sendcmd("HELP")
    assert ftp.sendcmd("HELP RETR").startswith("214")
    assert ftp.sendcmd("SITE HELP").startswith("214")
    assert ftp.sendcmd("ACCT x").startswith("202")
    assert ftp.sendcmd("ALLO 1000").startswith("202")
    with pytest.raises(ftplib.error_perm, match=r"^502"):
        ftp.sendcmd("SMNT /x")
    with pytest.raises(ftplib.error_perm, match=r"^500"):
        ftp.sendcmd("FOO")


def test_type_mode_stru(ftp) -> None:
    for cmd in ("TYPE A", "TYPE I", "TYPE L 8", "TYPE A N", "MODE S", "STRU F"):
        assert ftp.sendcmd(cmd).startswith("200"), cmd
    for cmd in ("TYPE E", "MODE B", "STRU R"):
        with pytest.raises(ftplib.error_perm, match=r"^504"):
            ftp.sendcmd(cmd)


def test_directories_and_x_variants(ftp, root: Path) -> None:
    assert ftp.mkd("a") == "/a"
    assert ftp.sendcmd("XMKD b").startswith("257")
    assert (root / "a").is_dir() and (root / "b").is_dir()
    ftp.cwd("a")
    assert ftp.pwd() == "/a"
    assert ftp.sendcmd("XPWD").startswith('257 "/a"')
    ftp.sendcmd("CDUP")
    assert ftp.pwd() == "/"
    ftp.sendcmd("XCWD b")
    ftp.sendcmd("XCUP")
    assert ftp.pwd() == "/"
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        ftp.cwd("nope")
    (root / "file.txt").write_bytes(b"x")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        ftp.cwd("file.txt")
    assert ftp.pwd() == "/"
    (root / "a" / "inner.txt").write_bytes(b"x")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        ftp.rmd("a")
    os.remove(root / "a" / "inner.txt")
    ftp.rmd("a")
    ftp.sendcmd("XRMD b")
    assert not (root / "a").exists() and not (root / "b").exists()
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        ftp.mkd("x/y/z")


def test_delete_and_rename(ftp, root: Path) -> None:
    (root / "old.txt").write_bytes(b"content")
    ftp.rename("old.txt", "new.txt")
    assert (root / "new.txt").read_bytes() == b"content"
    assert not (root / "old.txt").exists()
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        ftp.rename("missing", "x")
    with pytest.raises(ftplib.error_perm, match=r"^503"):
        ftp.sendcmd("RNTO x")
    ftp.mkd("dir")
    ftp.rename("new.txt", "dir/moved.txt")
    assert (root / "dir" / "moved.txt").exists()
    with pytest.raises(ftplib.error_perm, match=r"^55"):
        ftp.rename("dir", "dir/sub")
    ftp.delete("dir/moved.txt")
    assert not (root / "dir" / "moved.txt").exists()
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        ftp.delete("dir/moved.txt")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        ftp.delete("dir")


def test_size_mdtm_mfmt(ftp, root: Path) -> None:
    (root / "s.bin").write_bytes(b"12345")
    ts = 1_600_000_000
    os.utime(root / "s.bin", (ts, ts))
    assert ftp.size("s.bin") == 5
    assert ftp.sendcmd("MDTM s.bin") == "213 20200913122640"
    reply = ftp.sendcmd("MFMT 20010203040506 s.bin")
    assert reply.startswith("213 Modify=20010203040506;")
    assert int((root / "s.bin").stat().st_mtime) == 981173106
    with pytest.raises(ftplib.error_perm, match=r"^501"):
        ftp.sendcmd("MFMT 2001 s.bin")
    ftp.mkd("d")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        ftp.size("d")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        ftp.size("missing")


def test_list_nlst_mlsd_mlst(ftp, root: Path) -> None:
    (root / "dir").mkdir()
    (root / "f.txt").write_bytes(b"x" * 1234)
    old = time.time() - 400 * 86400
    os.utime(root / "f.txt", (old, old))
    (root / "with space.txt").write_bytes(b"s")
    for args in ((), ("-la",), ("-a", "/"), ("/",)):
        parsed = listing(ftp, *args)
        assert set(parsed) == {"dir", "f.txt", "with space.txt"}, args
    parsed = listing(ftp)
    assert parsed["f.txt"]["size"] == "1234"
    assert parsed["f.txt"]["when"].isdigit()  # older than six months: year shown
    assert ":" in parsed["dir"]["when"]
    assert parsed["dir"]["mode"].startswith("d")
    assert set(listing(ftp, "f.txt")) == {"f.txt"}
    assert sorted(ftp.nlst()) == ["dir", "f.txt", "with space.txt"]
    facts = dict(ftp.mlsd())
    assert facts["dir"]["type"] == "dir"
    assert facts["f.txt"]["size"] == "1234"
    assert facts["f.txt"]["perm"] == "adfrw"
    assert facts["f.txt"]["unix.mode"].startswith("0")
    mlst = ftp.sendcmd("MLST f.txt").splitlines()
    assert mlst[0].startswith("250-") and mlst[-1].startswith("250")
    assert "type=file;" in mlst[1] and "size=1234;" in mlst[1] and mlst[1].endswith(" /f.txt")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        listing(ftp, "nothing-here")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        list(ftp.mlsd("f.txt"))


def test_stat_server_file_and_directory(ftp, root: Path) -> None:
    (root / "f.txt").write_bytes(b"abc")
    status = ftp.sendcmd("STAT")
    assert status.startswith("211-") and "alice" in status
    file_status = ftp.sendcmd("STAT f.txt").splitlines()
    assert file_status[0].startswith("213-")
    assert LS_LINE.match(file_status[1].strip())
    assert "f.txt" in ftp.sendcmd("STAT /")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        ftp.sendcmd("STAT missing")


def test_utf8_names_including_chinese(ftp, root: Path) -> None:
    name = "文件-ünïcødé.txt"
    ftp.mkd("目录")
    ftp.storbinary(f"STOR 目录/{name}", io.BytesIO(b"zh"))
    assert (root / "目录" / name).read_bytes() == b"zh"
    assert name in ftp.nlst("目录")
    assert name in listing(ftp, "目录")
    buf = io.BytesIO()
    ftp.retrbinary(f"RETR 目录/{name}", buf.write)
    assert buf.getvalue() == b"zh"


def test_non_utf8_name_on_disk_is_listed_and_transferable(ftp, root: Path) -> None:
    raw = b"caf\xe9-latin1.txt"
    with open(os.path.join(os.fsencode(root), raw), "wb") as fh:
        fh.write(b"bytes")
    (root / "normal.txt").write_bytes(b"ok")
    ftp.encoding = "latin-1"  # see the raw bytes one to one
    names = ftp.nlst()
    assert raw.decode("latin-1") in names and "normal.txt" in names
    assert raw.decode("latin-1") in listing(ftp)
    buf = io.BytesIO()
    ftp.retrbinary("RETR " + raw.decode("latin-1"), buf.write)
    assert buf.getvalue() == b"bytes"
    ftp.rename(raw.decode("latin-1"), "renamed.txt")
    assert (root / "renamed.txt").read_bytes() == b"bytes"


def test_long_line_gets_500_and_session_goes_on(ftp) -> None:
    ftp.putline("NOOP " + "x" * 100_000)
    with pytest.raises(ftplib.error_perm, match=r"^500"):
        ftp.getresp()
    assert ftp.sendcmd("NOOP").startswith("200")


def test_pipelined_commands_answered_in_order(ftp) -> None:
    ftp.sock.sendall(b"NOOP\r\nPWD\r\nSYST\r\nTYPE I\r\n")
    assert ftp.getresp().startswith("200")
    assert ftp.getresp().startswith("257")
    assert ftp.getresp().startswith("215")
    assert ftp.getresp().startswith("200")


def test_rein_logs_out(ftp) -> None:
    assert ftp.sendcmd("REIN").startswith("220")
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        ftp.sendcmd("PWD")
    ftp.login("alice", "secret")
    assert ftp.pwd() == "/"


def test_idle_timeout_closes_with_421(make_server) -> None:
    srv = make_server(idle_timeout=0.5)
    f = connect(srv)
    # Waiting for the server's own timeout is the behaviour under test; the
    # read below blocks until the server speaks, it does not sleep.
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        f.getresp()
    f.close()


def test_masquerade_address_is_announced_in_pasv(make_server) -> None:
    srv = make_server(masquerade_address="203.0.113.7")
    f = connect(srv)
    f.login()
    reply = f.sendcmd("PASV")
    assert reply.startswith("227") and "(203,0,113,7," in reply
    f.quit()


def test_epsv_all_refuses_other_data_commands(ftp, root: Path) -> None:
    (root / "x.txt").write_bytes(b"x")
    assert ftp.sendcmd("EPSV ALL").startswith("200")
    for cmd in ("PASV", "PORT 127,0,0,1,200,1", "EPRT |1|127.0.0.1|50000|"):
        with pytest.raises(ftplib.error_perm, match=r"^503"):
            ftp.sendcmd(cmd)
    assert ftp.sendcmd("EPSV").startswith("229")
    with pytest.raises(ftplib.error_perm, match=r"^522"):
        ftp.sendcmd("EPSV 2")


def test_listing_cap_is_announced(make_server, root: Path) -> None:
    for i in range(12):
        (root / f"f{i:02d}").write_bytes(b"x")
    srv = make_server(max_list_entries=5)
    f = connect(srv)
    f.login()
    names: list[str] = []
    reply = f.retrlines("NLST", names.append)
    assert len(names) == 5
    assert "truncated at 5 entries" in reply
    f.quit()
