"""The backends the cluster tests run their nodes on, made by name.

Every module runs on a local folder and an SQLite database
(``local-sqlite``) and on one ``s3://`` prefix of a SeaweedFS bucket and a
PostgreSQL database (``s3-postgres``, what a real cluster runs);
``test_shared_state.py`` also runs on a local folder and PostgreSQL
(``local-postgres``). On PostgreSQL the nodes share their limits too. A
backend that needs a service starts it (failing, not skipping, when it is
missing).

Kept out of ``conftest.py`` so that a test module imports them by a unique
name: ``from conftest import ...`` finds whichever ``conftest`` pytest
loaded last, which depends on what else the run collects (with
``tests/examples`` on the same command line it was that one).
"""

from __future__ import annotations

import uuid
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


def _s3_postgres(base: Path, request: pytest.FixtureRequest) -> Backend:
    """A fresh key prefix of the session's SeaweedFS bucket and a fresh PostgreSQL database."""
    store = request.getfixturevalue("seaweed")
    server = request.getfixturevalue("postgres")
    bare = server.database("cluster").replace(f":{server.password}@", "@")
    root = f"s3://{store.bucket}/cluster-{uuid.uuid4().hex[:12]}"
    env = {**store.env(), "PGPASSWORD": server.password}
    return Backend("s3-postgres", root, bare, env=env, store=store)


BACKENDS = {"local-sqlite": _local_sqlite, "s3-postgres": _s3_postgres}
#: Where the nodes share their limits too: the shared-state tests run on these.
SHARED_BACKENDS = {"local-postgres": _local_postgres, "s3-postgres": _s3_postgres}


def make_backend(
    name: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Backend:
    base = tmp_path_factory.mktemp(name)
    made = SHARED_BACKENDS[name](base, request) if name in SHARED_BACKENDS else _local_sqlite(base)
    add_users(made)
    return made


def add_user(backend: Backend, name: str, password: str, *options: str) -> None:
    """An account with its home under the shared root (``options``: quota, caps...)."""
    fileferry(
        "user", "add", name, "--db", backend.db, "--password-stdin",
        "--home", backend.home(name), "--permissions", "elradfmw", *options,
        env=backend.env, stdin=password + "\n",
    )  # fmt: skip


def add_users(backend: Backend) -> None:
    for name, password in USERS.items():
        add_user(backend, name, password)
