"""Real clients (curl, lftp) against ``fileferry serve s3://...``: big, many, resumed, killed."""

from __future__ import annotations

import hashlib
import os
import random
import signal
from pathlib import Path

from interop_helpers import Curl, Lftp, Server, make_tree, require_tool, tree_digests
from s3kit import ServeS3, wait_until

GIB = 1 << 30


def _curl(tmp_path: Path) -> Curl:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return Curl(require_tool("curl"), tmp_path, home)


def _lftp(tmp_path: Path) -> Lftp:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return Lftp(require_tool("lftp"), tmp_path, home)


def _file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def _make_big(path: Path, size: int) -> str:
    """``size`` bytes, every MiB different, and their SHA-256 (written in one pass)."""
    block = bytearray(random.Random(5).randbytes(1 << 20))
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(size >> 20):
            block[:8] = i.to_bytes(8, "big")
            f.write(block)
            digest.update(block)
    return digest.hexdigest()


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_one_gib_up_and_down_with_bounded_memory(serve_s3: ServeS3, tmp_path: Path) -> None:
    s = serve_s3("--write")
    curl = _curl(tmp_path)
    src = tmp_path / "big.bin"
    want = _make_big(src, GIB)
    url = f"ftp://{s.host}:{s.port}/big.bin"
    curl.ok("-T", str(src), url)
    assert s.pending() == []
    src.unlink()  # the disk holds one copy at a time
    out = tmp_path / "back.bin"
    curl.ok("-o", str(out), url)
    assert out.stat().st_size == GIB
    assert _file_sha(out) == want
    assert s.proc is not None
    peak = _peak_rss_mib(s.proc.pid)
    # Streamed both ways: the server never held more than a few parts of it.
    assert peak < 256, f"server peak RSS {peak:.0f} MiB for a 1 GiB round trip"
    out.unlink()


def test_resume_download_and_upload(serve_s3: ServeS3, tmp_path: Path) -> None:
    s = serve_s3("--write")
    curl = _curl(tmp_path)
    data = random.Random(6).randbytes(11 << 20)
    full = tmp_path / "full.bin"
    full.write_bytes(data)
    url = f"ftp://{s.host}:{s.port}/r.bin"
    # Upload: the first part, then curl -C - finds the size (SIZE) and appends the rest.
    part = tmp_path / "part.bin"
    part.write_bytes(data[: 7 << 20])
    curl.ok("-T", str(part), url)
    curl.ok("-C", "-", "-T", str(full), url)
    # Download: a partial local copy is completed from its size (REST + RETR).
    local = tmp_path / "local.bin"
    local.write_bytes(data[: 3 << 20])
    curl.ok("-C", "-", "-o", str(local), url)
    assert hashlib.sha256(local.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert s.pending() == []


def test_lftp_mirrors_a_thousand_files_both_ways(serve_s3: ServeS3, tmp_path: Path) -> None:
    s = serve_s3("--write")
    lftp = _lftp(tmp_path)
    up = tmp_path / "up"
    up.mkdir()
    want = make_tree(up, files=1000)
    server = Server(None, up, s.host, s.port)  # type: ignore[arg-type]
    lftp.ok(server, f"mirror -R -P 8 --no-perms {up} /tree", debug=False)
    keys = [k for k in s.object_keys() if not k.endswith("/")]
    assert len(keys) == len(want) == 1000
    down = tmp_path / "down"
    lftp.ok(server, f"mirror -P 8 /tree {down}", debug=False)
    assert tree_digests(down) == want
    assert s.pending() == []


def test_kill_9_mid_upload_leaves_nothing_visible(serve_s3: ServeS3, tmp_path: Path) -> None:
    s = serve_s3("--write")
    prefix = s.prefix
    with s.ftp() as f:
        f.voidcmd("TYPE I")
        conn = f.transfercmd("STOR /killed.bin")
        block = os.urandom(1 << 20)
        for _ in range(20):
            conn.sendall(block)
        wait_until(lambda: s.pending() != [], what="a multipart upload is pending")
        s.stop(signal.SIGKILL)
        conn.close()
    assert s.object_keys() == []  # no object under the name, nothing half written
    # The next start's sweep aborts what the dead server left pending.
    again = serve_s3("--write", "--temp-max-age", "0", prefix=prefix)
    wait_until(lambda: again.pending() == [], what="the sweep aborted the dead upload")
    with again.ftp() as f:
        assert f.nlst("/") == []
