"""Every FTP command on ``fileferry serve s3://...`` with ftplib, checked on the store itself."""

from __future__ import annotations

import ftplib
import hashlib
import io
import random
import signal
import socket
import subprocess
import sys

import pytest
from s3kit import ServeS3, wait_until


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def retr(f: ftplib.FTP, path: str, rest: int | None = None) -> bytes:
    out = io.BytesIO()
    f.retrbinary(f"RETR {path}", out.write, rest=rest)
    return out.getvalue()


def stor(f: ftplib.FTP, path: str, data: bytes, cmd: str = "STOR", rest: int | None = None) -> str:
    return f.storbinary(f"{cmd} {path}", io.BytesIO(data), rest=rest)


def test_files_folders_and_listings(serve_s3: ServeS3) -> None:
    s = serve_s3("--write")
    data = random.Random(7).randbytes(3 << 20)
    with s.ftp() as f:
        assert stor(f, "/a.bin", data).startswith("226")
        assert stor(f, "/empty", b"").startswith("226")
        assert f.size("/a.bin") == len(data) and f.size("/empty") == 0
        assert sha(retr(f, "/a.bin")) == sha(data)
        assert retr(f, "/empty") == b""
        assert retr(f, "/a.bin", rest=1_000_000) == data[1_000_000:]
        assert f.mkd("/d") == "/d"
        stor(f, "/d/inner.txt", b"inner")
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.rmd("/d")  # not empty
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.mkd("/d")
        assert sorted(f.nlst("/")) == ["a.bin", "d", "empty"]
        facts = dict(f.mlsd("/"))
        assert facts["d"]["type"] == "dir" and facts["a.bin"]["size"] == str(len(data))
        assert f.sendcmd("MLST /d/inner.txt").startswith("250")
        lines: list[str] = []
        f.retrlines("LIST /", lines.append)
        assert any(line.startswith("d") and line.endswith(" d") for line in lines)
        # A folder made by MKD stays when emptied (its marker), then RMD removes it.
        f.delete("/d/inner.txt")
        assert f.nlst("/d") == []
        f.rmd("/d")
        assert sorted(f.nlst("/")) == ["a.bin", "empty"]
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.cwd("/d")
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.delete("/missing")
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            retr(f, "/missing")
    assert sorted(s.object_keys()) == ["a.bin", "empty"]
    assert s.pending() == []


def test_append_and_rest_store_give_the_right_bytes(serve_s3: ServeS3) -> None:
    s = serve_s3("--write")
    head = random.Random(1).randbytes(9 << 20)  # longer than one part
    tail = random.Random(2).randbytes(3 << 20)
    with s.ftp() as f:
        stor(f, "/log", head)
        stor(f, "/log", tail, cmd="APPE")
        assert sha(retr(f, "/log")) == sha(head + tail)
        stor(f, "/log", b"XYZ", rest=5)
        assert retr(f, "/log") == head[:5] + b"XYZ"
        with pytest.raises(ftplib.error_perm, match=r"^55"):
            stor(f, "/log", b"x", rest=100)
        stor(f, "/new", b"appended", cmd="APPE")
        assert retr(f, "/new") == b"appended"
    assert s.pending() == []


def test_rename_files_and_folders(serve_s3: ServeS3) -> None:
    s = serve_s3("--write")
    with s.ftp() as f:
        stor(f, "/f", b"file")
        f.rename("/f", "/g")
        assert retr(f, "/g") == b"file"
        f.mkd("/tree")
        f.mkd("/tree/sub")
        f.mkd("/tree/empty")
        for i in range(5):
            stor(f, f"/tree/sub/{i}.txt", str(i).encode())
        f.rename("/tree", "/moved")
        assert sorted(f.nlst("/")) == ["g", "moved"]
        assert sorted(f.nlst("/moved")) == ["empty", "sub"]
        assert retr(f, "/moved/sub/3.txt") == b"3"
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.rename("/missing", "/x")
        with pytest.raises(ftplib.error_perm, match=r"^55"):
            f.rename("/moved", "/moved/sub/inside")
    keys = s.object_keys()
    assert {f"moved/sub/{i}.txt" for i in range(5)} | {"g"} <= set(keys)
    assert not any(k.startswith(("tree", "f")) for k in keys)


def test_folder_rename_above_the_limit_is_refused_whole(serve_s3: ServeS3) -> None:
    from fileferry.storage.s3tree import RENAME_LIMIT

    s = serve_s3("--write")
    with s.ftp() as f:
        f.mkd("/big")
    # Fill the folder straight through the store: RENAME_LIMIT + 1 keys.
    for i in range(RENAME_LIMIT + 1):
        status, _ = s.store.request("PUT", f"/{s.store.bucket}/{s.prefix}/big/{i}", body=b"x")
        assert status == 200
    with s.ftp() as f:
        with pytest.raises(ftplib.error_perm, match=r"^550 Folder too large"):
            f.rename("/big", "/elsewhere")
        assert len(f.nlst("/big")) == RENAME_LIMIT + 1
        assert "elsewhere" not in f.nlst("/")


def test_mfmt_mdtm_and_hash_from_metadata(serve_s3: ServeS3) -> None:
    s = serve_s3("--write")
    small = b"small object"
    large = random.Random(3).randbytes(17 << 20)  # a multipart upload: hash kept as a tag
    with s.ftp() as f:
        stor(f, "/small", small)
        stor(f, "/large", large)
        assert "MFMT" in f.sendcmd("FEAT")
        assert f.sendcmd("MFMT 20200102030405 /small").startswith("213")
        assert f.sendcmd("MDTM /small") == "213 20200102030405"
        assert "modify=20200102030405" in f.sendcmd("MLST /small")
        assert retr(f, "/small") == small  # the metadata copy kept the bytes
        for path, data in (("/small", small), ("/large", large)):
            reply = f.sendcmd(f"HASH {path}")
            assert reply.split()[1:4] == ["SHA-256", f"0-{len(data) - 1}", sha(data)]
        assert f.sendcmd("XSHA256 /large") == "250 " + sha(large).upper()
        assert f.sendcmd("XMD5 /small") == "250 " + hashlib.md5(small).hexdigest().upper()
    # The SHA-256 really is kept with the objects, not computed again.
    status, body = s.store.request("GET", f"/{s.store.bucket}/{s.prefix}/large", {"tagging": ""})
    assert status == 200 and sha(large).encode() in body


def test_stou_and_no_clobber(serve_s3: ServeS3) -> None:
    s = serve_s3("--write")
    with s.ftp() as f:
        first = f.storbinary("STOU", io.BytesIO(b"one"))
        second = f.storbinary("STOU", io.BytesIO(b"two"))
        assert first.startswith("226") and second.startswith("226")
        names = f.nlst("/")
        assert len(names) == 2
        assert sorted(retr(f, "/" + n) for n in names) == [b"one", b"two"]


def test_abort_mid_upload_leaves_nothing(serve_s3: ServeS3) -> None:
    s = serve_s3("--write")
    with s.ftp() as f:
        f.voidcmd("TYPE I")
        conn = f.transfercmd("STOR /aborted.bin")
        block = random.Random(4).randbytes(1 << 20)
        for _ in range(24):  # three parts: the multipart upload has begun
            conn.sendall(block)
        wait_until(lambda: s.pending() != [], what="a multipart upload is pending")
        # The data connection stays open until the replies are in: closing it
        # first would be a clean end of the upload (EOF), which commits it.
        f.sock.sendall(b"ABOR\r\n")
        replies = [f.getline()[:3] for _ in range(2)]
        conn.close()
        assert replies == ["426", "226"]
        assert "aborted.bin" not in f.nlst("/")
    wait_until(lambda: s.pending() == [], what="no pending multipart upload")
    assert s.object_keys() == []


def test_reset_mid_upload_leaves_nothing(serve_s3: ServeS3) -> None:
    s = serve_s3("--write")
    with s.ftp() as f:
        f.voidcmd("TYPE I")
        conn = f.transfercmd("STOR /reset.bin")
        for _ in range(12):
            conn.sendall(bytes(1 << 20))
        wait_until(lambda: s.pending() != [], what="a multipart upload is pending")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        conn.close()  # RST, not FIN: an unclean end
        with pytest.raises(ftplib.error_temp, match=r"^4(26|51)"):
            f.getresp()
        assert f.nlst("/") == []
    wait_until(lambda: s.pending() == [], what="no pending multipart upload")
    assert s.object_keys() == []


def test_shutdown_mid_upload_aborts_the_multipart_upload(serve_s3: ServeS3) -> None:
    s = serve_s3("--write", "--shutdown-grace", "0")
    f = s.ftp()
    f.voidcmd("TYPE I")
    conn = f.transfercmd("STOR /cut.bin")
    for _ in range(12):
        conn.sendall(bytes(1 << 20))
    wait_until(lambda: s.pending() != [], what="a multipart upload is pending")
    assert s.stop(signal.SIGTERM) == 0
    with pytest.raises(ftplib.error_temp, match=r"^4(26|21|51)"):
        f.getresp()
    conn.close()
    f.close()
    assert s.pending() == []
    assert s.object_keys() == []


def test_feat_describes_the_bucket(serve_s3: ServeS3) -> None:
    s = serve_s3("--write")
    with s.ftp() as f:
        feat = f.sendcmd("FEAT")
        assert "MFMT" in feat and "HASH" in feat
        assert "CHMOD" not in f.sendcmd("SITE HELP")


def test_plain_serve_never_imports_obstore(tmp_path) -> None:
    code = f"""
import ftplib, io, sys
from fileferry import config
from fileferry.server.thread import ServerThread
cfg = config.build({{"root": {str(tmp_path)!r}, "port": 0, "write": True}})
with ServerThread(cfg) as t:
    f = ftplib.FTP(); f.connect(*t.address); f.login()
    f.storbinary("STOR x", io.BytesIO(b"x")); f.nlst(); f.quit()
assert "obstore" not in sys.modules, "obstore imported"
assert not any(m.startswith("fileferry.storage.s3") for m in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_missing_bucket_fails_at_start_with_one_line(seaweed) -> None:
    import os

    done = subprocess.run(
        [sys.executable, "-m", "fileferry", "serve", "s3://no-such-bucket-here", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **seaweed.env()},
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "fileferry: root: s3://no-such-bucket-here: bucket 'no-such-bucket-here' does not exist"
    ]
    assert seaweed.env()["AWS_SECRET_ACCESS_KEY"] not in done.stderr + done.stdout
