"""Fixtures of the cluster tests: what the nodes share, and the cluster in front of it.

``backend`` is parametrised by name. Today there is one: a local folder and
an SQLite database. A PostgreSQL ``--db`` or an ``s3://`` root is one more
name here, whose branch starts the service (failing, not skipping, when it
is missing) and returns a :class:`~clusterkit.Backend` with its URLs; every
cluster test then runs against it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterkit import USERS, Backend, Cluster, fileferry, running


def _local_sqlite(base: Path) -> Backend:
    root = base / "files"
    root.mkdir()
    return Backend("local-sqlite", str(root), str(base / "users.db"))


BACKENDS = {"local-sqlite": _local_sqlite}


def add_users(backend: Backend) -> None:
    for name, password in USERS.items():
        fileferry(
            "user", "add", name, "--db", backend.db, "--password-stdin",
            "--home", str(Path(backend.root) / name), "--permissions", "elradfmw",
            env=backend.env, stdin=password + "\n",
        )  # fmt: skip


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    made = BACKENDS[request.param](tmp_path_factory.mktemp(request.param))
    add_users(made)
    return made


@pytest.fixture(scope="module")
def cluster(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two nodes behind HAProxy, shared by a module's tests that kill nothing."""
    with running(tmp_path_factory.mktemp("cluster"), backend) as made:
        yield made
