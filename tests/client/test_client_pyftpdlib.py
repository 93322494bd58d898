"""The client against pyftpdlib, a server fileferry did not write (started by the tests).

pyftpdlib has MLSD, REST, MFMT and TLS but no HASH, so these tests also show
the client's fallbacks: verification by size, uploads resumed only on request.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from clientkit import SRC, Server, make_ca, pyftpd, run_cli, sha256, tree

import fileferry
from fileferry.cli import main


@pytest.fixture
def out(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


@pytest.fixture
def logged_in(pyserver: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("FILEFERRY_PASSWORD", pyserver.password)
    return pyserver


def test_every_command(logged_in: Server, out: Path, capsys):
    srv = logged_in
    (out / "a.txt").write_text("alpha\n")
    (out / "b.bin").write_bytes(os.urandom(300_000))
    assert main(["mkdir", "-q", "-P", srv.at("x/y")]) == 0
    assert main(["put", "-q", str(out / "a.txt"), str(out / "b.bin"), srv.at("x/")]) == 0
    assert sha256(srv.root / "x" / "b.bin") == sha256(out / "b.bin")
    capsys.readouterr()
    assert main(["ls", srv.at("x")]) == 0
    assert capsys.readouterr().out.splitlines() == ["a.txt", "b.bin", "y/"]
    assert main(["ls", "--json", srv.at("x")]) == 0
    sizes = {r["name"]: r["size"] for r in json.loads(capsys.readouterr().out)}
    assert sizes["b.bin"] == 300_000
    assert main(["mv", "-q", srv.at("x/a.txt"), srv.at("x/y/a.txt")]) == 0
    assert (srv.root / "x" / "y" / "a.txt").read_text() == "alpha\n"
    assert main(["get", srv.at("x/b.bin"), str(out / "copy.bin")]) == 0
    assert "size verified" in capsys.readouterr().err  # no HASH here: the size is checked
    assert sha256(out / "copy.bin") == sha256(out / "b.bin")
    assert main(["hash", srv.at("x/b.bin")]) == 5
    assert "offers no file digest" in capsys.readouterr().err
    assert main(["rm", "-q", srv.at("x/b.bin")]) == 0
    assert main(["rm", "-q", "-r", srv.at("x")]) == 0
    assert list(srv.root.iterdir()) == []
    assert main(["get", "-q", srv.at("nope"), str(out)]) == 5


def test_segmented_and_parallel(logged_in: Server, out: Path):
    big = out / "big.bin"
    big.write_bytes(os.urandom(4_000_000))
    small = []
    for i in range(16):
        p = out / f"s{i}.bin"
        p.write_bytes(os.urandom(10_000 + i))
        small.append(str(p))
    assert main(["put", "-q", "--parallel", "4", str(big), *small, logged_in.at("")]) == 0
    for name in [str(big), *small]:
        assert sha256(logged_in.root / Path(name).name) == sha256(Path(name))
    dest = out / "dl.bin"
    assert main(["get", "-q", "--segments", "4", logged_in.at("big.bin"), str(dest)]) == 0
    assert sha256(dest) == sha256(big)


def test_active_mode(logged_in: Server, out: Path):
    (out / "a.bin").write_bytes(os.urandom(100_000))
    assert main(["put", "-q", "--active", str(out / "a.bin"), logged_in.at("")]) == 0
    assert main(["get", "-q", "--active", logged_in.at("a.bin"), str(out / "b.bin")]) == 0
    assert sha256(out / "b.bin") == sha256(out / "a.bin")


_KILL_AFTER_1MB = """
import asyncio, os, signal, sys
import fileferry
from fileferry.client import ClientError

url, password, local, remote = sys.argv[1:5]

class Stop:
    sent = 0
    def start(self, total, done):
        pass
    def advance(self, n):
        self.sent += n
        if self.sent >= 1_000_000:
            raise ClientError("cut off")  # the data connection is dropped here

async def main():
    async with fileferry.connect(url, password=password) as ftp:
        try:
            await ftp.upload(local, remote, progress=Stop())
        except ClientError:
            # The server has answered the cut-off transfer, so it is done with
            # the file: only now is the client killed (no race with the server).
            os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def test_put_resumes_after_the_client_was_killed(logged_in: Server, out: Path):
    src = out / "big.bin"
    src.write_bytes(os.urandom(5_000_000))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    remote = f"{logged_in.root.name}/big.bin"  # API paths start at the login folder
    args = [logged_in.at(""), logged_in.password, str(src), remote]
    killed = subprocess.run(
        [sys.executable, "-c", _KILL_AFTER_1MB, *args],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL
    # pyftpdlib keeps what arrived under the target name; --resume continues it.
    resumed = run_cli("put", "--resume", str(src), logged_in.at(""), env=logged_in.env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at" in resumed.stderr and "size verified" in resumed.stderr
    assert sha256(logged_in.root / "big.bin") == sha256(src)


def test_default_put_does_not_append_to_an_unproven_remote_file(logged_in: Server, out: Path):
    src = out / "f.bin"
    src.write_bytes(os.urandom(400_000))
    (logged_in.root / "f.bin").write_bytes(b"z" * 100_000)  # shorter, but not f.bin's start

    async def go():
        async with fileferry.connect(logged_in.at(""), password=logged_in.password) as ftp:
            return await ftp.upload(src, f"{logged_in.root.name}/f.bin")

    result = asyncio.run(asyncio.wait_for(go(), 60))
    assert (result.resumed_from, result.verified_by) == (0, "size")
    assert sha256(logged_in.root / "f.bin") == sha256(src)


def test_thousand_file_mirror_round_trip(logged_in: Server, out: Path):
    rng = random.Random(6)
    src = out / "src"
    for i in range(1000):
        d = src / f"dir{i % 10}" / f"sub{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"file{i}.dat").write_bytes(rng.randbytes(rng.randrange(0, 3000)))
    url = logged_in.at("mirror")
    assert main(["mirror", "-q", "--parallel", "4", str(src), url]) == 0
    back = out / "back"
    assert main(["mirror", "-q", "--parallel", "4", url, str(back)]) == 0
    diff = subprocess.run(["diff", "-r", str(src), str(back)], capture_output=True, timeout=60)
    assert diff.returncode == 0, diff.stdout[:2000]
    assert len(tree(back)) == 1000 + 10 + 70


# --- TLS: pyftpdlib's TLS_FTPHandler, requiring TLS on control and data --------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("pyftpd-tls")
    ca, cert, key = make_ca(base)
    root = base / "root"
    root.mkdir()
    with pyftpd(root, base / "server.log", cert=cert, key=key) as server:
        yield server, ca


def test_tls_transfers_with_a_trusted_ca(tls_server, out: Path, monkeypatch):
    server, ca = tls_server
    monkeypatch.setenv("FILEFERRY_PASSWORD", server.password)
    (out / "s.bin").write_bytes(os.urandom(2_000_000))
    common = ["-q", "--ca-file", str(ca)]
    assert main(["put", *common, str(out / "s.bin"), server.at("")]) == 0
    assert sha256(server.root / "s.bin") == sha256(out / "s.bin")
    assert main(["get", *common, "--segments", "3", server.at("s.bin"), str(out / "t.bin")]) == 0
    assert sha256(out / "t.bin") == sha256(out / "s.bin")
    assert main(["get", *common, "--active", server.at("s.bin"), str(out / "u.bin")]) == 0
    assert sha256(out / "u.bin") == sha256(out / "s.bin")
    assert main(["ls", *common, server.at("")]) == 0


def test_tls_refuses_an_untrusted_certificate(tls_server, out: Path):
    server, _ = tls_server
    result = run_cli("ls", server.at(""), env=server.env)
    assert result.returncode == 3
    assert "certificate" in result.stderr and "--ca-file" in result.stderr
    insecure = run_cli("ls", "--insecure", server.at(""), env=server.env)
    assert insecure.returncode == 0, insecure.stderr


def test_plain_ftp_to_a_tls_only_server_is_refused(tls_server):
    server, _ = tls_server
    plain = server.at("").replace("ftps://", "ftp://")
    result = run_cli("ls", plain, env=server.env)
    assert result.returncode == 4  # the server wants AUTH TLS before USER


# --- a server without MLST/MLSD (as vsftpd is): LIST parsing and CWD probing ---------------


@pytest.fixture(scope="module")
def plain_list_server(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("pyftpd-nomlst")
    root = base / "root"
    root.mkdir()
    with pyftpd(root, base / "server.log", extra=("--no-mlst",)) as server:
        yield server


def test_without_mlst(plain_list_server: Server, out: Path, monkeypatch, capsys):
    srv = plain_list_server
    monkeypatch.setenv("FILEFERRY_PASSWORD", srv.password)
    (out / "a b.txt").write_text("spaced name\n")
    assert main(["mkdir", "-q", srv.at("box")]) == 0
    # No trailing slash: only a CWD probe can tell that "box" is a folder.
    assert main(["put", "-q", str(out / "a b.txt"), srv.at("box")]) == 0
    assert (srv.root / "box" / "a b.txt").read_text() == "spaced name\n"
    capsys.readouterr()
    assert main(["ls", "--json", srv.at("box")]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["name"], row["type"], row["size"]) == ("a b.txt", "file", 12)
    site = out / "site"
    for i in range(12):
        (site / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (site / f"d{i % 3}" / f"f {i}.txt").write_bytes(os.urandom(i * 10))
    assert main(["mirror", "-q", str(site), srv.at("site")]) == 0
    back = out / "back"
    assert main(["mirror", "-q", srv.at("site"), str(back)]) == 0
    assert tree(back) == tree(site)
