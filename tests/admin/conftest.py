"""Fixtures of the web admin tests: a server with ``--admin`` on a thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from adminkit import AdminServer, start


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminServer]:
    server = start(tmp_path_factory.mktemp("admin"))
    yield server
    server.stop()
