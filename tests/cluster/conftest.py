"""Fixtures of the cluster tests: what the nodes share, and the cluster in front of it.

``backend`` is parametrised by name: a local folder and an SQLite database
for every module; ``test_shared_state.py`` also runs on a local folder and
PostgreSQL (``local-postgres``), whose limits the nodes share. A backend
that needs a service starts it (failing, not skipping, when it is missing)
and returns a :class:`~clusterkit.Backend` with its URLs.
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


def _local_postgres(base: Path, request: pytest.FixtureRequest) -> Backend:
    """A fresh namespace on the test session's PostgreSQL; the password in PGPASSWORD."""
    server = request.getfixturevalue("postgres")
    root = base / "files"
    root.mkdir()
    bare = server.database("cluster").replace(f":{server.password}@", "@")
    return Backend("local-postgres", str(root), bare, env={"PGPASSWORD": server.password})


BACKENDS = {"local-sqlite": _local_sqlite}
#: Where the nodes share their limits too: the shared-state tests run on these as well.
SHARED_BACKENDS = {"local-postgres": _local_postgres}


def make_backend(
    name: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Backend:
    base = tmp_path_factory.mktemp(name)
    made = _local_postgres(base, request) if name in SHARED_BACKENDS else BACKENDS[name](base)
    add_users(made)
    return made


def add_users(backend: Backend) -> None:
    for name, password in USERS.items():
        fileferry(
            "user", "add", name, "--db", backend.db, "--password-stdin",
            "--home", str(Path(backend.root) / name), "--permissions", "elradfmw",
            env=backend.env, stdin=password + "\n",
        )  # fmt: skip


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    return make_backend(request.param, request, tmp_path_factory)


@pytest.fixture(scope="module")
def cluster(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two nodes behind HAProxy, shared by a module's tests that kill nothing."""
    with running(tmp_path_factory.mktemp("cluster"), backend) as made:
        yield made
