"""HASH and the X* commands against a real fileferry server, checked with hashlib/zlib."""

from __future__ import annotations

import ftplib
import hashlib
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from fileferry import config
from fileferry.server.thread import ServerThread
from fileferry.users.base import Account
from fileferry.users.passwords import hash_password
from fileferry.users.static import StaticUser, StaticUserStore

DATA = os.urandom(3 * 1024 * 1024 + 17)  # several read chunks, not a multiple of any


def _cfg(root: Path) -> config.ServerConfig:
    return config.build(
        {
            "root": str(root),
            "port": 0,
            "write": True,
            "login_failure_delay": 0,
            "idle_timeout": 30,
            "data_timeout": 30,
            "users": (config.parse_user_spec("alice:secret"),),
        }
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hashroot")
    (d / "big.bin").write_bytes(DATA)
    (d / "empty").write_bytes(b"")
    (d / "a dir").mkdir()
    (d / "a dir" / "with space 1 2").write_bytes(b"hello world\n")
    return d


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[ServerThread]:
    with ServerThread(_cfg(root)) as srv:
        yield srv


@pytest.fixture
def ftp(server: ServerThread) -> Iterator[ftplib.FTP]:
    f = ftplib.FTP(timeout=30)
    f.encoding = "utf-8"
    f.connect(*server.address)
    f.login("alice", "secret")
    yield f
    f.close()


def _digest(name: str, data: bytes) -> str:
    if name == "CRC32":
        return f"{zlib.crc32(data):08x}"
    return hashlib.new(name.replace("-", "").lower(), data).hexdigest()


@pytest.mark.parametrize("algorithm", ["SHA-256", "SHA-512", "SHA-1", "MD5", "CRC32"])
def test_hash_of_whole_file(ftp, algorithm):
    assert ftp.sendcmd(f"OPTS HASH {algorithm}") == f"200 {algorithm}"
    reply = ftp.sendcmd("HASH big.bin")
    assert reply == f"213 {algorithm} 0-{len(DATA) - 1} {_digest(algorithm, DATA)} /big.bin"


def test_default_is_sha256_and_feat_says_so(ftp):
    assert " HASH SHA-256*;SHA-512;SHA-1;MD5;CRC32" in ftp.sendcmd("FEAT").splitlines()
    digest = hashlib.sha256(DATA).hexdigest()
    assert ftp.sendcmd("HASH /big.bin").split()[3] == digest


def test_hash_with_rang(ftp):
    assert ftp.sendcmd("RANG 1000 2000000").startswith("350")
    reply = ftp.sendcmd("HASH big.bin")
    assert reply.split()[2:4] == ["1000-2000000", _digest("SHA-256", DATA[1000:2000001])]
    # Used up: the next HASH covers the whole file again.
    assert ftp.sendcmd("HASH big.bin").split()[2] == f"0-{len(DATA) - 1}"


def test_rang_end_past_eof_is_clamped_and_start_past_eof_refused(ftp):
    ftp.sendcmd(f"RANG 10 {len(DATA) * 2}")
    reply = ftp.sendcmd("HASH big.bin")
    assert reply.split()[2:4] == [f"10-{len(DATA) - 1}", _digest("SHA-256", DATA[10:])]
    ftp.sendcmd(f"RANG {len(DATA)} {len(DATA) + 5}")
    with pytest.raises(ftplib.error_perm, match=r"^554"):
        ftp.sendcmd("HASH big.bin")


def test_empty_file(ftp):
    assert ftp.sendcmd("HASH empty") == f"213 SHA-256 0-0 {hashlib.sha256().hexdigest()} /empty"


@pytest.mark.parametrize(
    ("verb", "algorithm"),
    [
        ("XCRC", "CRC32"),
        ("XMD5", "MD5"),
        ("XSHA1", "SHA-1"),
        ("XSHA256", "SHA-256"),
        ("XSHA512", "SHA-512"),
    ],
)
def test_legacy_commands(ftp, verb, algorithm):
    assert ftp.sendcmd(f"{verb} big.bin") == f"250 {_digest(algorithm, DATA).upper()}"
    part = ftp.sendcmd(f"{verb} big.bin 5 1048581")
    assert part == f"250 {_digest(algorithm, DATA[5:1048581]).upper()}"


def test_legacy_quoted_name_with_spaces_and_numbers(ftp):
    expected = _digest("MD5", b"hello world\n").upper()
    assert ftp.sendcmd('XMD5 "a dir/with space 1 2"') == f"250 {expected}"
    assert (
        ftp.sendcmd('XMD5 "a dir/with space 1 2" 0 5') == f"250 {_digest('MD5', b'hello').upper()}"
    )


def test_missing_file_and_directory(ftp):
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        ftp.sendcmd("HASH nope")
    with pytest.raises(ftplib.error_perm, match=r"^553"):
        ftp.sendcmd("HASH a dir")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        ftp.sendcmd("XSHA256 a dir")


def test_hash_of_an_uploaded_file_matches(ftp):
    import io

    payload = os.urandom(200_000)
    ftp.storbinary("STOR up.bin", io.BytesIO(payload))
    assert ftp.sendcmd("HASH up.bin").split()[3] == hashlib.sha256(payload).hexdigest()


def test_hash_needs_read_permission(root: Path):
    # An account that may list but not retrieve: HASH must not reveal contents.
    blind = Account("blind", str(root), permissions="el")
    users = StaticUserStore([StaticUser(blind, hash_password("pw"))])
    with ServerThread(_cfg(root), users=users) as server:
        f = ftplib.FTP(timeout=30)
        f.connect(*server.address)
        f.login("blind", "pw")
        try:
            with pytest.raises(ftplib.error_perm, match=r"^550"):
                f.sendcmd("HASH big.bin")
            with pytest.raises(ftplib.error_perm, match=r"^550"):
                f.sendcmd("XCRC big.bin")
            assert f.sendcmd("NOOP").startswith("200")
        finally:
            f.close()
