"""Shared fixtures for interoperability tests against real FTP clients (curl, lftp).

Every test gets its own served root and its own server on a free port, so
tests never see each other's files. The clients run as subprocesses with a
hard timeout; nothing here sleeps or depends on timing.

A missing client binary skips the tests locally but fails them when the
``CI`` environment variable is set: CI must exercise the real clients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_helpers import (
    PASSWORD,
    USER,
    Curl,
    Lftp,
    Server,
    ServerFactory,
    ipv6_loopback_usable,
    require_tool,
)

from fileferry import config
from fileferry.server.thread import ServerThread


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers (each with its own root); all are stopped at teardown."""
    with contextlib.ExitStack() as stack:
        counter = 0

        def start(**overrides: object) -> Server:
            nonlocal counter
            counter += 1
            root = tmp_path / f"root{counter}"
            root.mkdir()
            values: dict[str, object] = {
                "root": str(root),
                "host": "127.0.0.1",
                "port": 0,
                "anonymous": True,
                "write": True,
                "login_failure_delay": 0,
                "idle_timeout": 120,
                "data_timeout": 60,
                "accept_timeout": 30,
                "users": (config.parse_user_spec(f"{USER}:{PASSWORD}"),),
            }
            values.update(overrides)
            thread = stack.enter_context(ServerThread(config.build(values)))
            host, port = thread.address
            return Server(thread, Path(values["root"]).resolve(), host, port)  # type: ignore[arg-type]

        yield start


@pytest.fixture
def server(start_server: ServerFactory) -> Server:
    """A read-write server on 127.0.0.1 (anonymous and alice may both write)."""
    return start_server()


@pytest.fixture
def ipv6_server(start_server: ServerFactory) -> Server:
    if not ipv6_loopback_usable():
        pytest.skip("IPv6 loopback (::1) is not usable here")
    return start_server(host="::1")


@pytest.fixture
def dual_stack_server(start_server: ServerFactory) -> Server:
    if not ipv6_loopback_usable():
        pytest.skip("IPv6 is not usable here")
    return start_server(host="::")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A local directory for the client side of transfers."""
    d = tmp_path / "client"
    d.mkdir()
    return d


@pytest.fixture
def client_home(tmp_path: Path) -> Path:
    """HOME for client subprocesses, so no user rc file or history is read or written."""
    d = tmp_path / "home"
    d.mkdir()
    return d


@pytest.fixture
def curl(workdir: Path, client_home: Path) -> Curl:
    return Curl(require_tool("curl"), workdir, client_home)


@pytest.fixture
def lftp(workdir: Path, client_home: Path) -> Lftp:
    return Lftp(require_tool("lftp"), workdir, client_home)
