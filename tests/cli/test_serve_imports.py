"""What a running ``fileferry serve`` has imported: only what its configuration uses.

Every module a server imports stays in its memory for its whole life, and
a server started from flags alone has no use for a TOML parser, SQLite, PostgreSQL,
Argon2, the TLS modules, the shared-memory limits of ``--workers``, or the
FTP client. The server writes ``sys.modules`` to the file named by
``FILEFERRY_DEBUG_MODULES`` before its ready line; these tests read it.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path

#: Never in a server started from flags alone, without TLS, database or workers.
NOT_FOR_FLAGS_ONLY = (
    "tomllib",
    "sqlite3",
    "psycopg",
    "psycopg_pool",
    "argon2",
    "_argon2_cffi_bindings",
    "cryptography",
    "multiprocessing",
    "difflib",
    "rich",
    "fileferry.client",
    "fileferry.server.tls",
    "fileferry.server.implicit",
    "fileferry.server.workers",
    "fileferry.server.supervisor",
    "fileferry.limits.shared",
    "fileferry.users.sqlite",
    # Only the serve command's own parser is built: not the other commands' modules.
    "fileferry.cli.user",
    "fileferry.cli.admin",
    "fileferry.cli.config",
    "fileferry.cli.client",
    "fileferry.users.admins",
    "getpass",
    "json",
    "secrets",
    # Only --workers --metrics makes a temporary folder.
    "tempfile",
    # An ASCII host is resolved as bytes, without the IDNA codec and its tables.
    "encodings.idna",
    "stringprep",
    "unicodedata",
)


def _serve_modules(tmp_path: Path, *args: str) -> set[str]:
    """Start ``fileferry serve``, wait for its ready line, return its imported modules."""
    dump = tmp_path / "modules.txt"
    home = tmp_path / "home"  # no default user database from the real home
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "FILEFERRY_DEBUG_MODULES": str(dump),
    }
    argv = [sys.executable, "-m", "fileferry", "serve", "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(
        [*argv, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(30), "no ready line within 30 s"
        line = proc.stdout.readline()
        assert "serving" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
    return set(dump.read_text().split())


def _present(modules: set[str], names: tuple[str, ...]) -> list[str]:
    """The names of ``names`` found in ``modules``, a package counting with its submodules."""
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


def test_flags_only_server_imports_no_parser_database_hash_or_tls(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    modules = _serve_modules(tmp_path, str(root))
    # The dump is real: the server's own modules are there.
    assert {"fileferry.server.control", "fileferry.storage.local", "asyncio"} <= modules
    assert _present(modules, NOT_FOR_FLAGS_ONLY) == []


def test_a_database_brings_sqlite_and_its_hashes_in_but_still_no_toml(tmp_path: Path) -> None:
    root, db = tmp_path / "root", tmp_path / "users.db"
    root.mkdir()
    add = [sys.executable, "-m", "fileferry", "user", "add", "--db", str(db), "--password-stdin"]
    done = subprocess.run(
        [*add, "alice", "--home", str(root)], input="secret\n", capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    modules = _serve_modules(tmp_path, str(root), "--db", str(db), "--no-anonymous")
    assert {"sqlite3", "fileferry.users.sqlite"} <= modules
    assert _present(modules, ("tomllib", "fileferry.server.tls", "fileferry.client")) == []


def test_every_command_is_found_by_its_name_alone() -> None:
    """``fileferry serve`` builds only its module's parser: the name map must be whole."""
    import argparse

    from fileferry.cli import COMMAND_NAMES, COMMANDS, build_parser

    everything = build_parser()
    sub = next(a for a in everything._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(COMMAND_NAMES)
    assert set(COMMAND_NAMES.values()) == set(COMMANDS)
    for name, module in COMMAND_NAMES.items():
        alone = build_parser(module)
        own = next(a for a in alone._actions if isinstance(a, argparse._SubParsersAction))
        assert name in own.choices, (name, module)
