"""FTPS fixtures: a test CA, and servers with TLS on free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tlskit import Certs, make_certs

from fileferry import config
from fileferry.server.thread import ServerThread


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "root"
    d.mkdir()
    return d


@pytest.fixture
def make_tls_server(root: Path, certs: Certs) -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def make(**values: Any) -> ServerThread:
        values.setdefault("root", str(root))
        values.setdefault("port", 0)
        values.setdefault("write", True)
        values.setdefault("login_failure_delay", 0)
        values.setdefault("accept_timeout", 10)
        values.setdefault("data_timeout", 20)
        values.setdefault("tls_cert", str(certs.cert))
        values.setdefault("tls_key", str(certs.key))
        users = values.pop("users", ("alice:secret",))
        values["users"] = tuple(config.parse_user_spec(u) for u in users)
        srv = ServerThread(config.build(values)).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
