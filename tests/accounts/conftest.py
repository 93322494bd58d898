"""Fixtures for the account end-to-end tests: servers backed by a real SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from accountkit import Serve, Served, write_db

from fileferry import config
from fileferry.server.thread import ServerThread
from fileferry.users.base import Account


@pytest.fixture
def homes(tmp_path: Path) -> Path:
    d = tmp_path / "homes"
    d.mkdir()
    return d


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    started: list[ServerThread] = []
    count = 0

    def start(*accounts: Account, **values: Any) -> Served:
        nonlocal count
        count += 1
        root = tmp_path / f"root{count}"
        root.mkdir()
        db = write_db(tmp_path / f"users{count}.db", *accounts)
        values.setdefault("root", str(root))
        values.setdefault("port", 0)
        values.setdefault("anonymous", False)
        values.setdefault("login_failure_delay", 0)
        values.setdefault("idle_timeout", 30)
        values.setdefault("data_timeout", 30)
        values.setdefault("accept_timeout", 10)
        values.setdefault("db", str(db))
        thread = ServerThread(config.build(values)).start()
        started.append(thread)
        return Served(thread, root, db)

    yield start
    for thread in started:
        thread.stop()
