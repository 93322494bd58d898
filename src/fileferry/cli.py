"""The ``fileferry`` command line.

``fileferry serve [DIR]`` must be as easy as ``python -m http.server``: one
command, a ready line that says where to connect, Ctrl-C to stop. Errors in
options or config are one line naming what is wrong, and exit status 2.

Other subcommands live in their own modules, listed in :data:`SUBCOMMANDS`;
each has ``register(subparsers)``, which adds its parsers and sets
``run=callable(args) -> exit status`` on them. Heavy imports belong inside
those callables so that ``fileferry serve`` starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from fileferry import __version__, config
from fileferry.errors import ConfigError

#: Modules that add subcommands (see the module docstring).
SUBCOMMANDS: tuple[str, ...] = ()


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fileferry", description="A fast, secure, concurrent FTP server."
    )
    parser.add_argument("--version", action="version", version=f"fileferry {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="serve a folder over FTP")
    serve.set_defaults(run=run_serve)
    serve.add_argument("root", nargs="?", metavar="DIR", help="folder to serve (default: .)")
    # Every default is None so that only flags given on the command line
    # override the config file and the environment.
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1; :: = dual stack)")
    serve.add_argument("--port", type=int, help="port to listen on (default 2121; 0 = any free)")
    serve.add_argument(
        "--user",
        action="append",
        metavar="NAME:PASSWORD",
        help="add a read/write user (repeatable); kept only as a salted hash",
    )
    serve.add_argument(
        "--anonymous",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="allow anonymous login (default: on)",
    )
    serve.add_argument(
        "--write", action="store_true", default=None, help="let anonymous users write too"
    )
    serve.add_argument("--passive-ports", metavar="LO-HI", help="port range for passive mode")
    serve.add_argument(
        "--masquerade-address", metavar="ADDR", help="IPv4 address to announce in PASV replies"
    )
    serve.add_argument(
        "--idle-timeout", type=float, metavar="SECONDS", help="control idle timeout (300)"
    )
    serve.add_argument(
        "--data-timeout", type=float, metavar="SECONDS", help="data connection stall timeout (300)"
    )
    serve.add_argument(
        "--fsync-uploads", action="store_true", default=None, help="fsync before answering 226"
    )
    serve.add_argument("--config", metavar="FILE.toml", help="read settings from a TOML file")
    serve.add_argument("--log-level", choices=config.LOG_LEVELS, help="log verbosity (info)")
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def _flag_values(args: argparse.Namespace) -> dict[str, object]:
    values: dict[str, object] = {}
    for key in (
        "root",
        "host",
        "port",
        "anonymous",
        "write",
        "masquerade_address",
        "idle_timeout",
        "data_timeout",
        "fsync_uploads",
        "log_level",
    ):
        value = getattr(args, key)
        if value is not None:
            values[key] = value
    if args.passive_ports is not None:
        values["passive_ports"] = config.parse_port_range(args.passive_ports, "--passive-ports")
    if args.user:
        values["users"] = tuple(config.parse_user_spec(spec) for spec in args.user)
    return values


def load_config(args: argparse.Namespace) -> config.ServerConfig:
    layers: list[dict[str, object]] = []
    if args.config:
        layers.append(config.load_toml(args.config))
    layers.append(config.from_environment(os.environ))
    layers.append(_flag_values(args))
    return config.build(*layers)


def _describe_access(cfg: config.ServerConfig) -> str:
    parts = []
    if cfg.anonymous:
        parts.append("anonymous read/write" if cfg.write else "anonymous read-only")
    if cfg.users:
        parts.append(f"{len(cfg.users)} user{'s' if len(cfg.users) > 1 else ''}")
    return ", ".join(parts) or "no logins allowed"


async def _serve(cfg: config.ServerConfig) -> int:
    from fileferry.server.app import FTPServer

    server = FTPServer(cfg)
    try:
        await server.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"fileferry: port {cfg.port} on {cfg.host} is already in use", file=sys.stderr)
        else:
            print(
                f"fileferry: cannot listen on {cfg.host}:{cfg.port}: {exc.strerror}",
                file=sys.stderr,
            )
        return 1
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"fileferry {__version__} serving {cfg.root} at {server.url} ({_describe_access(cfg)})",
        flush=True,
    )
    await stop.wait()
    logging.getLogger("fileferry").info("stopping")
    await server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 2
    result: int = run(args)
    return result


def run_serve(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args)
    except ConfigError as exc:
        print(f"fileferry: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=cfg.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(_serve(cfg))
    except KeyboardInterrupt:
        return 0
