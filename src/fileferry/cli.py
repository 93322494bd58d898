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
SUBCOMMANDS: tuple[str, ...] = ("fileferry.usercli", "fileferry.configcli", "fileferry.client.cli")


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
    serve.add_argument(
        "--fs-calls",
        choices=config.FS_CALLS,
        help="where local-disk metadata calls run: auto (inline on local file systems, "
        "a thread on network ones), inline, thread (auto)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes sharing the port, one event loop each (default 1)",
    )
    tls = serve.add_argument_group("FTPS (RFC 4217)")
    tls.add_argument("--tls-cert", metavar="FILE", help="PEM certificate (chain) for FTPS")
    tls.add_argument("--tls-key", metavar="FILE", help="PEM private key for FTPS")
    tls.add_argument(
        "--tls-self-signed",
        action="store_true",
        default=None,
        help="make a throwaway self-signed certificate and print its fingerprint",
    )
    tls.add_argument(
        "--tls-required",
        action="store_true",
        default=None,
        help="refuse logins and transfers without TLS",
    )
    tls.add_argument(
        "--tls-implicit-port", type=int, metavar="PORT", help="also listen for implicit FTPS"
    )
    tls.add_argument(
        "--tls-session-reuse",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="PROT P data connections must resume the control TLS session (default: on)",
    )
    limits = serve.add_argument_group("limits")
    limits.add_argument("--max-sessions", type=int, metavar="N", help="sessions in total (2000)")
    limits.add_argument(
        "--max-sessions-per-ip", type=int, metavar="N", help="sessions per client address (200)"
    )
    limits.add_argument(
        "--login-timeout", type=float, metavar="SECONDS", help="time to log in (60)"
    )
    serve.add_argument(
        "--db",
        metavar="PATH",
        help="user database made by `fileferry user` (default: used if it exists,"
        " ~/.local/share/fileferry/users.db)",
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
        "fs_calls",
        "workers",
        "log_level",
        "tls_cert",
        "tls_key",
        "tls_self_signed",
        "tls_required",
        "tls_implicit_port",
        "tls_session_reuse",
        "max_sessions",
        "max_sessions_per_ip",
        "login_timeout",
        "db",
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
    from fileferry.users.sqlite import default_db_path

    layers: list[dict[str, object]] = []
    default_db = default_db_path()
    if default_db.is_file():  # the lowest layer: a file, the environment or --db may override
        layers.append({"db": str(default_db)})
    if args.config:
        layers.append(config.load_toml(args.config))
    layers.append(config.from_environment(os.environ))
    layers.append(_flag_values(args))
    return config.build(*layers)


def _describe_tls(cfg: config.ServerConfig) -> str:
    if cfg.tls_cert is None and not cfg.tls_self_signed:
        return ""
    return "; TLS required" if cfg.tls_required else "; TLS available"


def _describe_access(cfg: config.ServerConfig) -> str:
    parts = []
    if cfg.anonymous:
        parts.append("anonymous read/write" if cfg.write else "anonymous read-only")
    if cfg.users:
        parts.append(f"{len(cfg.users)} user{'s' if len(cfg.users) > 1 else ''}")
    if cfg.db:
        parts.append(f"users from {cfg.db}")
    return ", ".join(parts) or "no logins allowed"


async def _serve(cfg: config.ServerConfig) -> int:
    from fileferry.server.app import FTPServer, ListenError

    try:
        server = FTPServer(cfg)
    except ConfigError as exc:
        print(f"fileferry: {exc}", file=sys.stderr)
        return 2
    try:
        await server.start()
    except OSError as exc:
        port = exc.port if isinstance(exc, ListenError) else cfg.port
        if exc.errno == errno.EADDRINUSE:
            print(f"fileferry: port {port} on {cfg.host} is already in use", file=sys.stderr)
        else:
            print(
                f"fileferry: cannot listen on {cfg.host}:{port}: {exc.strerror}",
                file=sys.stderr,
            )
        await server.app.close()
        return 1
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload_tls)
    extra = ""
    implicit = server.implicit_address
    if implicit is not None:
        host = f"[{implicit[0]}]" if ":" in implicit[0] else implicit[0]
        extra = f", implicit FTPS at ftps://{host}:{implicit[1]}"
    print(
        f"fileferry {__version__} serving {cfg.root} at {server.url}"
        f" ({_describe_access(cfg)}{_describe_tls(cfg)}){extra}",
        flush=True,
    )
    if server.app.tls is not None and cfg.tls_self_signed:
        from fileferry.server.tls import fingerprint

        print(
            f"self-signed TLS certificate, SHA-256 fingerprint {fingerprint(server.app.tls.cert)}",
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
    from fileferry.logformat import LineFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter())
    logging.basicConfig(level=cfg.log_level.upper(), handlers=[handler])
    # That format shows no caller, thread or process, so do not compute them for
    # every record (the logging HOWTO's "Optimization"): a sixth of a login's CPU.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # type: ignore[attr-defined]
    from fileferry.server import eventloop

    try:
        if cfg.workers > 1:
            from fileferry.server.workers import serve_workers

            access = f"{_describe_access(cfg)}{_describe_tls(cfg)}"
            line = f"fileferry {__version__} serving {cfg.root} at {{}} ({access})"
            return serve_workers(cfg, line.format)
        return eventloop.run(_serve(cfg))
    except KeyboardInterrupt:
        return 0
