"""The backends the cluster tests run their nodes on, made by name.

Kept out of ``conftest.py`` so that a test module imports them by a unique
name: ``from conftest import ...`` finds whichever ``conftest`` pytest
loaded last, which depends on what else the run collects (with
``tests/examples`` on the same command line it was that one).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from clusterkit import USERS, Backend, fileferry


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
