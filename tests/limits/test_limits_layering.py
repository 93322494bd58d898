"""The limits package stays a leaf: the server may change, the limits must not follow.

``limits`` imports only ``errors``, ``paths`` and itself (a PostgreSQL
ledger must fit without the server); the storage's quota wrapper knows
nothing of ``limits`` (it declares the protocol it needs); and importing
every limits module in a fresh interpreter pulls in no server module, so
there is no import cycle to hide.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "fileferry"


def _fileferry_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.split(".")[0] == "fileferry"}


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_limits_imports_only_errors_paths_and_itself() -> None:
    modules = sorted((PACKAGE / "limits").glob("*.py"))
    assert len(modules) > 5
    bad = {
        m.name: sorted(wrong)
        for m in modules
        if (
            wrong := {
                i
                for i in _fileferry_imports(m)
                if not _under(i, "fileferry.limits", "fileferry.errors", "fileferry.paths")
            }
        )
    }
    assert bad == {}


def test_the_storage_quota_wrapper_does_not_know_the_limits() -> None:
    imports = _fileferry_imports(PACKAGE / "storage" / "quota.py")
    assert not any(_under(i, "fileferry.limits", "fileferry.server") for i in imports)


def test_importing_the_limits_loads_no_server_module() -> None:
    names = [f"fileferry.limits.{p.stem}" for p in (PACKAGE / "limits").glob("*.py")]
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "outside = ('fileferry.server', 'fileferry.storage', 'fileferry.users')\n"
        "print(sorted(m for m in sys.modules if m.startswith(outside)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
