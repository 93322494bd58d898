"""The server shell's layering: handlers know a context, never the shell or the root."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from fileferry.protocol.commands import COMMANDS, SITE_COMMANDS, permission
from fileferry.server import control
from fileferry.server.handlers import files, hashing, listings, transfers
from fileferry.server.handlers.chmod import CHMOD_PERMISSION
from fileferry.server.handlers.site import EXEC_PERMISSION, SITE_HANDLERS
from fileferry.users.base import KNOWN_LETTERS

SERVER = Path(control.__file__).resolve().parent


def _runtime_imports(path: Path) -> set[str]:
    """Modules ``path`` imports when it runs (``if TYPE_CHECKING:`` blocks left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


SERVER_MODULES = sorted(p for p in SERVER.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_scanner_sees_runtime_imports_and_skips_type_checking_ones() -> None:
    app = _runtime_imports(SERVER / "app.py")
    assert "fileferry.server.control" in app
    ctx = _runtime_imports(SERVER / "context.py")
    assert "fileferry.server.accounts" not in ctx  # only under TYPE_CHECKING there


#: What runs a server (the root, and the runners that start one) may build it.
_RUNNERS = {"app.py", "thread.py", "workers.py"}


@pytest.mark.parametrize("path", SERVER_MODULES, ids=lambda p: str(p.relative_to(SERVER)))
def test_no_server_module_imports_the_shell_or_the_root_at_run_time(path: Path) -> None:
    imports = _runtime_imports(path)
    if path.name != "app.py":  # the composition root is the one place that builds the shell
        assert "fileferry.server.control" not in imports
    if path.name not in _RUNNERS:
        assert not any(i.startswith("fileferry.server.app") for i in imports)


def test_every_permission_letter_in_the_table_is_an_account_letter() -> None:
    letters = {c.permission for c in COMMANDS.values()} | {
        s.permission for s in SITE_COMMANDS.values()
    }
    assert letters - {""} <= set(KNOWN_LETTERS)
    assert set(KNOWN_LETTERS) <= letters  # and every account letter guards something


def test_handlers_check_the_letters_of_the_table() -> None:
    assert files._MKD == permission("MKD") == "m"
    assert files._CWD == permission("CDUP") == "e"
    assert files._MFMT == "T"
    assert transfers._RETR == "r"
    assert {m.value: letter for m, letter in transfers._STORE.items()} == {
        "STOR": "w",
        "APPE": "a",
        "STOU": "w",
    }
    assert set(listings._LETTERS.values()) == {"l"}
    assert CHMOD_PERMISSION == "M" and EXEC_PERMISSION == "X"
    assert all(permission(v) == "r" for v in ("HASH", "XCRC", "XSHA256"))
    assert hashing.MAX_CONCURRENT > 0


def test_every_site_row_has_a_handler() -> None:
    assert SITE_HANDLERS.keys() == SITE_COMMANDS.keys()


def test_buffered_bytes_are_seen_without_waiting() -> None:
    async def main() -> tuple[bytes, bytes, bytes]:
        reader = asyncio.StreamReader()
        empty = control._take_buffered(reader)
        reader.feed_data(b"USER evil\r\n")
        waiting = control._take_buffered(reader)
        reader.feed_data(b"later")
        # The stream still works normally after a look that found nothing.
        after = await reader.read(100)
        return empty, waiting, after

    assert asyncio.run(main()) == (b"", b"USER evil\r\n", b"later")


def test_every_event_the_core_can_emit_has_a_handler() -> None:
    from fileferry.protocol import events
    from fileferry.server.handlers import HANDLERS

    kinds = {
        v for v in vars(events).values() if isinstance(v, type) and issubclass(v, events.Event)
    }
    abstract = {events.Event, events.Transfer, type(events.NEED_DATA)}
    emitted = kinds - abstract - {events.Answer}  # the shell sends an Answer's reply itself
    assert emitted, "the scan must find the event types"
    assert emitted == set(HANDLERS)
