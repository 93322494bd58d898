"""ftps:// against fileferry's own FTPS (RFC 4217), which requires TLS and session reuse.

The server refuses any data connection that does not resume the control
connection's TLS session, so every transfer here passing shows that the
client resumes it, in passive and active mode and over several connections.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from clientkit import Server, make_ca, run_cli, sha256, tree

import fileferry
from fileferry import config
from fileferry.cli import main
from fileferry.server.thread import ServerThread


@pytest.fixture(scope="module")
def tls_ff(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    base = tmp_path_factory.mktemp("fftls")
    ca, cert, key = make_ca(base)
    root = base / "root"
    root.mkdir()
    cfg = config.build(
        {
            "root": str(root),
            "port": 0,
            "login_failure_delay": 0,
            "idle_timeout": 60,
            "data_timeout": 60,
            "accept_timeout": 20,
            "tls_cert": str(cert),
            "tls_key": str(key),
            "tls_required": True,
            "users": (config.parse_user_spec("carol:s3cret"),),
        }
    )
    with ServerThread(cfg) as server:
        host, port = server.address
        yield Server(f"ftps://carol@{host}:{port}", root, "carol", "s3cret"), ca


@pytest.fixture
def out(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


def test_cli_over_tls(tls_ff, out: Path, monkeypatch: pytest.MonkeyPatch):
    server, ca = tls_ff
    monkeypatch.setenv("FILEFERRY_PASSWORD", server.password)
    common = ["-q", "--ca-file", str(ca)]
    data = out / "data.bin"
    data.write_bytes(os.urandom(2_500_000))
    assert main(["mkdir", *common, server.at("tls")]) == 0
    assert main(["put", *common, str(data), server.at("tls/")]) == 0
    assert sha256(server.root / "tls" / "data.bin") == sha256(data)
    for extra in ([], ["--active"], ["--segments", "4"]):
        dest = out / f"copy{len(extra)}.bin"
        assert main(["get", *common, *extra, server.at("tls/data.bin"), str(dest)]) == 0
        assert sha256(dest) == sha256(data)
    site = out / "site"
    for i in range(20):
        (site / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (site / f"d{i % 4}" / f"f{i}").write_bytes(os.urandom(i * 100))
    assert main(["mirror", *common, "--parallel", "3", str(site), server.at("tls/site")]) == 0
    assert tree(server.root / "tls" / "site") == tree(site)
    assert main(["rm", *common, "-r", server.at("tls")]) == 0


def test_api_over_tls_verifies_with_hash(tls_ff, out: Path):
    server, ca = tls_ff
    (server.root / "h.bin").write_bytes(os.urandom(400_000))

    async def go():
        async with fileferry.connect(
            server.at(""), password=server.password, ca_file=str(ca)
        ) as ftp:
            return await ftp.download("h.bin", out / "h.bin")

    result = asyncio.run(asyncio.wait_for(go(), 60))
    assert result.verified_by == "SHA-256"
    assert sha256(out / "h.bin") == sha256(server.root / "h.bin")


def test_untrusted_certificate_and_insecure(tls_ff):
    server, _ = tls_ff
    untrusted = run_cli("ls", server.at(""), env=server.env)
    assert untrusted.returncode == 3
    assert "certificate" in untrusted.stderr
    insecure = run_cli("ls", "--insecure", server.at(""), env=server.env)
    assert insecure.returncode == 0, insecure.stderr


def test_plain_login_is_refused_by_a_tls_only_server(tls_ff):
    server, _ = tls_ff
    plain = run_cli("ls", server.at("").replace("ftps://", "ftp://"), env=server.env)
    assert plain.returncode == 4
    assert "refused" in plain.stderr


def test_ftps_to_a_server_without_tls_is_a_connection_error(ffserver: Server):
    url = ffserver.at("").replace("ftp://", "ftps://")
    result = run_cli("ls", url, env=ffserver.env)
    assert result.returncode == 3
    assert "does not offer TLS" in result.stderr
