"""A throwaway PostgreSQL server for the tests: Debian's binaries, a temp folder, a free port.

One server per test session (``initdb`` takes a second or two; a database
takes a few milliseconds), and a fresh database wherever a test needs
isolation (:meth:`PostgresServer.database`). The server listens on
127.0.0.1 only, with its unix socket in its own temp folder, and asks for
a password (SCRAM), so the tests exercise the same authentication a
deployment does. Run as root, ``initdb`` and ``postgres`` refuse to start;
they then run as the ``postgres`` OS user, in a folder it owns.

A missing PostgreSQL is a failure, never a skip: CI installs it
(``.ci/run``), and a contract that silently did not run would look green.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SUPERUSER = "fileferry"
#: The database the tests' schemas are made in.
SHARED_DB = "fileferry_tests"
#: Settings for speed: the data is thrown away, so durability buys nothing.
FAST = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    " -c max_connections=200 -c shared_buffers=32MB"
)


def _bin_dir() -> Path:
    """Where initdb is: PATH first, else the newest Debian cluster version."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not candidates:
        pytest.fail(
            "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin);"
            " install the Debian package 'postgresql' (.ci/run does)",
            pytrace=False,
        )
    return Path(candidates[-1]).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server: where it listens and how to reach it as its superuser."""

    host: str
    port: int
    password: str
    folder: Path
    _names: Iterator[int] = field(default_factory=itertools.count)

    def url(self, database: str = "postgres", *, password: bool = True) -> str:
        """``postgresql://`` URL of ``database`` (without the password if asked)."""
        secret = f":{self.password}" if password else ""
        return f"postgresql://{SUPERUSER}{secret}@{self.host}:{self.port}/{database}"

    def database(self, prefix: str = "t") -> str:
        """A fresh empty namespace; the URL (with the password) of a connection that uses it.

        A schema of one shared database, made the connection's search path
        (``options=-c search_path=...``): everything fileferry creates lands
        in it. A schema takes a millisecond where ``CREATE DATABASE`` takes
        half a second.
        """
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(SHARED_DB), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return f"{self.url(SHARED_DB)}?options=-csearch_path%3D{name}"


def _runner(owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--"] if owner else []


def _start(bin_dir: Path, folder: Path, owner: str | None, password: str) -> int:
    data, log = folder / "data", folder / "server.log"
    last = ""
    for _ in range(5):  # a port another process grabbed since we probed: try another
        port = _free_port()
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder} {FAST}"
        )
        done = subprocess.run(
            [
                *_runner(owner),
                str(bin_dir / "pg_ctl"),
                *("-D", str(data), "-l", str(log)),
                *("-o", options, "-w", "-t", "60", "start"),
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
        if done.returncode == 0:
            return port
        last = done.stdout + done.stderr + (log.read_text() if log.exists() else "")
    pytest.fail(f"PostgreSQL did not start:\n{last}", pytrace=False)


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """initdb + pg_ctl start in a temp folder; stopped and removed on exit."""
    bin_dir = _bin_dir()
    owner = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="fileferry-pg-"))
    password = secrets.token_urlsafe(16)
    try:
        (folder / "pw").write_text(password + "\n")
        if owner:
            shutil.chown(folder, owner)
            shutil.chown(folder / "pw", owner)
        os.chmod(folder, 0o700)
        init = subprocess.run(
            [
                *_runner(owner),
                str(bin_dir / "initdb"),
                *("-D", str(folder / "data")),
                *("-U", SUPERUSER, f"--pwfile={folder / 'pw'}", "--auth=scram-sha-256"),
                *("-E", "UTF8", "--no-sync", "--no-instructions"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if init.returncode != 0:
            pytest.fail(f"initdb failed:\n{init.stdout}{init.stderr}", pytrace=False)
        (folder / "pw").unlink()
        port = _start(bin_dir, folder, owner, password)
        try:
            server = PostgresServer("127.0.0.1", port, password, folder)
            import psycopg

            with psycopg.connect(server.url(), autocommit=True, connect_timeout=10) as conn:
                conn.execute(f"CREATE DATABASE {SHARED_DB}")
            yield server
        finally:
            subprocess.run(
                [
                    *_runner(owner),
                    str(bin_dir / "pg_ctl"),
                    *("-D", str(folder / "data")),
                    *("-m", "immediate", "-w", "stop"),
                ],
                capture_output=True,
                timeout=60,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A fresh namespace for one test (URL with the password)."""
    return postgres.database()
