"""A real fileferry server on a background thread, per test, on a free port."""

from __future__ import annotations

import ftplib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serverkit import connect

from fileferry import config
from fileferry.server.thread import ServerThread


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "root"
    d.mkdir()
    return d


@pytest.fixture
def make_server(root: Path) -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def make(**values: Any) -> ServerThread:
        values.setdefault("root", str(root))
        values.setdefault("port", 0)
        values.setdefault("login_failure_delay", 0)
        values.setdefault("idle_timeout", 30)
        values.setdefault("data_timeout", 30)
        values.setdefault("accept_timeout", 10)
        users = values.pop("users", ())
        values["users"] = tuple(config.parse_user_spec(u) for u in users)
        srv = ServerThread(config.build(values)).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    """Anonymous read-write plus user alice:secret."""
    return make_server(write=True, users=("alice:secret",))


@pytest.fixture
def ftp(server: ServerThread) -> Iterator[ftplib.FTP]:
    f = connect(server)
    f.login("alice", "secret")
    yield f
    try:
        f.quit()
    except (ftplib.Error, OSError, EOFError):
        f.close()
