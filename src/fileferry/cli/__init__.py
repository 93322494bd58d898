"""The ``fileferry`` command line: one entry point, one module per group of commands.

``fileferry serve [DIR]`` must be as easy as ``python -m http.server``; the
other commands manage accounts (``user``), print the reference config
(``config``) or are the client (``get``, ``put``, ``ls``, ``mirror``...).

Each module in :data:`COMMANDS` has ``register(subparsers)``, which adds its
parsers and sets ``run=callable(args) -> exit status`` on them. Heavy
imports belong inside those callables so that every command starts fast.

A server lives for weeks with whatever its command line imported, so when
the first argument names a command (:data:`COMMAND_NAMES`), only that
command's module is imported and only its parsers are built; the parser is
dropped before the command runs. ``fileferry serve`` thus never holds the
account, admin, config or client commands and their parsers in memory.
Anything else (``--help``, a typo) builds the whole parser, so help and
"invalid choice" list every command.
"""

from __future__ import annotations

import argparse
import importlib
import sys
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

#: The subcommands each module of :data:`COMMANDS` adds (a test keeps it in step).
COMMAND_NAMES: dict[str, str] = {
    "serve": "fileferry.cli.serve",
    "user": "fileferry.cli.user",
    "admin": "fileferry.cli.admin",
    "config": "fileferry.cli.config",
    **dict.fromkeys(
        ("get", "put", "ls", "mkdir", "rm", "mv", "hash", "mirror"), "fileferry.cli.client"
    ),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``fileferry`` parser; with ``only``, just that module of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="fileferry", description="A fast, secure, concurrent FTP server."
    )
    parser.add_argument("--version", action="version", version=f"fileferry {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if only is None else (only,):
        importlib.import_module(name).register(sub)
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace | None:
    """The parsed command line, or None after printing the help of a bare ``fileferry``."""
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(COMMAND_NAMES.get(words[0]) if words else None)
    args = parser.parse_args(words)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return None
    return args


def main(argv: Sequence[str] | None = None) -> int:
    # The parser is built and dropped in parse(): only the namespace outlives it.
    args = parse(argv)
    if args is None:
        return 2
    result: int = args.run(args)
    return result
