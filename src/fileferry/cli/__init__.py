"""The ``fileferry`` command line: one entry point, one module per group of commands.

``fileferry serve [DIR]`` must be as easy as ``python -m http.server``; the
other commands manage accounts (``user``), print the reference config
(``config``) or are the client (``get``, ``put``, ``ls``, ``mirror``...).

Each module in :data:`COMMANDS` has ``register(subparsers)``, which adds its
parsers and sets ``run=callable(args) -> exit status`` on them. Heavy
imports belong inside those callables so that every command starts fast.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from fileferry import __version__

#: Modules that add subcommands (see the module docstring), in ``--help`` order.
COMMANDS: tuple[str, ...] = (
    "fileferry.cli.serve",
    "fileferry.cli.user",
    "fileferry.cli.admin",
    "fileferry.cli.config",
    "fileferry.cli.client",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fileferry", description="A fast, secure, concurrent FTP server."
    )
    parser.add_argument("--version", action="version", version=f"fileferry {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 2
    result: int = run(args)
    return result
