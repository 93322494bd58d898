"""``fileferry serve [DIR]``: a ready line that says where to connect, Ctrl-C to stop.

Errors in options or config are one line naming what is wrong, exit status
2; a port that cannot be listened on is one line, exit status 1. Both the
single-process path and ``--workers N`` report through :func:`announce` and
:func:`failure`, so they say the same things the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING

from fileferry import __version__, backends, config
from fileferry.config.flags import add_setting_flags, flag_values
from fileferry.errors import ConfigError

if TYPE_CHECKING:
    from fileferry.config import ServerConfig


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser("serve", help="serve a folder over FTP")
    serve.set_defaults(run=run_serve)
    serve.add_argument("root", nargs="?", metavar="DIR", help="folder to serve (default: .)")
    serve.add_argument(
        "--user",
        action="append",
        metavar="NAME:PASSWORD",
        help="add a read/write user (repeatable); kept only as a salted hash",
    )
    add_setting_flags(serve)
    serve.add_argument("--config", metavar="FILE.toml", help="read settings from a TOML file")


def load_config(args: argparse.Namespace) -> ServerConfig:
    """Defaults, the default user database if it exists, the file, the environment, flags."""
    layers: list[dict[str, object]] = []
    if args.config:
        layers.append(config.load_toml(args.config))
    layers.append(config.from_environment(os.environ, warn=_warn))
    flags = flag_values(args)
    if args.root is not None:
        flags["root"] = args.root
    if args.user:
        flags["users"] = tuple(config.parse_user_spec(spec) for spec in args.user)
    layers.append(flags)
    if not any("db" in layer for layer in layers):
        default_db = _default_user_store()
        if default_db is not None:  # the lowest layer
            layers.insert(0, {"db": default_db})
    return config.build(*layers)


def _default_user_store() -> str | None:
    """The default user database if there is one; never looked at when ``db`` is given.

    It is optional, so one that cannot even be looked at (the home of
    another user, a broken link) is a warning, not a reason not to start.
    """
    from fileferry import backends
    from fileferry.users.base import UserStoreError

    location = backends.default_user_store()
    try:
        found = backends.user_store_backend(location).exists(location)
    except UserStoreError as exc:
        _warn(f"{exc}; serving without it (name one with --db)")
        return None
    return location if found else None


def _warn(message: str) -> None:
    """A warning before logging is set up: one line on stderr, like the errors."""
    print(f"fileferry: warning: {message}", file=sys.stderr)


def _describe(cfg: ServerConfig) -> str:
    parts = []
    if cfg.anonymous:
        parts.append("anonymous read/write" if cfg.write else "anonymous read-only")
    if cfg.users:
        parts.append(f"{len(cfg.users)} user{'s' if len(cfg.users) > 1 else ''}")
    if cfg.user_store.db:
        parts.append(f"users from {backends.describe_user_store(cfg.user_store.db)}")
    access = ", ".join(parts) or "no logins allowed"
    if cfg.tls.enabled:
        access += "; TLS required" if cfg.tls.required else "; TLS available"
    return access


def _url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def announce(
    cfg: ServerConfig,
    address: tuple[str, int],
    implicit: tuple[str, int] | None,
    self_signed_cert: str | None,
    metrics: tuple[str, int] | None = None,
) -> None:
    """The ready line (and a self-signed certificate's fingerprint), once the server listens."""
    line = f"fileferry {__version__} serving {cfg.storage.root} at {_url('ftp', *address)}"
    line += f" ({_describe(cfg)})"
    if implicit is not None:
        line += f", implicit FTPS at {_url('ftps', *implicit)}"
    if metrics is not None:
        line += f", metrics at {_url('http', *metrics)}/metrics"
    if cfg.workers > 1:
        line += f", {cfg.workers} workers"
    print(line, flush=True)
    if self_signed_cert is not None:
        from fileferry.server.tls import fingerprint

        print(
            f"self-signed TLS certificate, SHA-256 fingerprint {fingerprint(self_signed_cert)}",
            flush=True,
        )


def failure(cfg: ServerConfig, exc: Exception) -> int:
    """One line on stderr for a server that could not start; the exit status."""
    from fileferry.server.listen import ListenError

    if isinstance(exc, ConfigError):
        print(f"fileferry: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, OSError):
        # The listener that failed (--metrics and --admin have hosts of their own).
        host, port = (exc.host, exc.port) if isinstance(exc, ListenError) else (cfg.host, cfg.port)
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            print(f"fileferry: port {port} on {host} is already in use", file=sys.stderr)
        else:
            print(f"fileferry: cannot listen on {where}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"fileferry: {exc}", file=sys.stderr)
    return 1


async def _serve(cfg: ServerConfig) -> int:
    from fileferry.server.app import FTPServer
    from fileferry.server.signals import stop_on_signals

    try:
        server = FTPServer(cfg)
    except ConfigError as exc:
        return failure(cfg, exc)
    try:
        await server.start()
    except OSError as exc:
        await server.app.close()
        return failure(cfg, exc)
    stop = stop_on_signals(server, cfg.shutdown_grace)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, server.hangup)
    tls = server.app.tls
    cert = tls.cert if tls is not None and cfg.tls.self_signed else None
    _dump_modules()
    announce(cfg, server.address, server.implicit_address, cert, server.metrics_address)
    if server.admin is not None:
        print(f"web admin and API at {server.admin.url}", flush=True)
    await stop
    return 0


def _dump_modules() -> None:
    """With ``FILEFERRY_DEBUG_MODULES=PATH``, write the imported modules there, once ready.

    A test holds the serving process to importing only what its configuration
    uses (no TOML parser, SQLite, Argon2 or TLS modules it does not need), as
    a fact rather than a timing. Only whoever sets the server's environment
    can ask for it; no client can. Written before the ready line, so a reader
    that saw the line finds the file whole.
    """
    path = os.environ.get("FILEFERRY_DEBUG_MODULES")
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(sorted(sys.modules)) + "\n")


def _serve_workers(cfg: ServerConfig) -> int:
    from fileferry.server.workers import WorkerStartError, serve_workers

    try:
        return serve_workers(cfg, lambda *ready: announce(cfg, *ready))
    except (ConfigError, OSError, WorkerStartError) as exc:
        return failure(cfg, exc)


def _setup_logging(cfg: ServerConfig) -> None:
    """Log lines on stderr, as text or JSON; ``--node-name`` in each (always in JSON)."""
    handler = logging.StreamHandler(sys.stderr)
    if cfg.logging.format == "json":
        from fileferry.observability.jsonlog import JsonFormatter

        handler.setFormatter(JsonFormatter(cfg.node))
    else:
        from fileferry.logformat import LineFormatter

        handler.setFormatter(LineFormatter(cfg.node_name))
    logging.basicConfig(level=cfg.logging.level.upper(), handlers=[handler])
    # That format shows no caller, thread or process, so do not compute them for
    # every record (the logging HOWTO's "Optimization"): a sixth of a login's CPU.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.logAsyncioTasks = False  # Python 3.12+: the current task's name
    logging._srcfile = None


def run_serve(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args)
    except ConfigError as exc:
        print(f"fileferry: {exc}", file=sys.stderr)
        return 2
    _setup_logging(cfg)
    from fileferry.server import eventloop

    try:
        if cfg.workers > 1:
            return _serve_workers(cfg)
        return eventloop.run(_serve(cfg))
    except KeyboardInterrupt:
        return 0
