"""Fixtures for the client tests: a fileferry server per test, pyftpdlib per module."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from clientkit import Server, pyftpd

from fileferry import config
from fileferry.server.thread import ServerThread

_dirs = itertools.count()


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test sees the developer's ~/.netrc or password variable."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("FILEFERRY_PASSWORD", raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    return home


@pytest.fixture
def ffserver(tmp_path: Path) -> Iterator[Server]:
    """fileferry with user alice:secret (read/write) on a free port."""
    root = tmp_path / "ffroot"
    root.mkdir()
    cfg = config.build(
        {
            "root": str(root),
            "port": 0,
            "login_failure_delay": 0,
            "idle_timeout": 60,
            "data_timeout": 60,
            "accept_timeout": 20,
            "users": (config.parse_user_spec("alice:secret"),),
        }
    )
    with ServerThread(cfg) as server:
        host, port = server.address
        yield Server(f"ftp://alice@{host}:{port}", root, "alice", "secret")


@pytest.fixture(scope="module")
def pyftpd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("pyftpd")
    root = base / "root"
    root.mkdir()
    with pyftpd(root, base / "server.log") as server:
        yield server


@pytest.fixture
def pyserver(pyftpd_server: Server) -> Server:
    """The module's pyftpdlib server, with a fresh folder of its own as the URL base."""
    name = f"t{next(_dirs)}"
    (pyftpd_server.root / name).mkdir()
    return Server(
        f"{pyftpd_server.url}/{name}",
        pyftpd_server.root / name,
        pyftpd_server.user,
        pyftpd_server.password,
    )
