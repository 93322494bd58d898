"""Several worker processes on one port: how fileferry uses more than one core.

One asyncio loop runs on one core, so a 2-core machine serving 300 uploads
at once leaves half of itself idle. ``--workers N`` forks N processes after
the configuration is loaded; each binds the same port with ``SO_REUSEPORT``
and runs its own event loop, thread pool and sessions, and the kernel spreads
new connections over them. Forking (rather than starting fresh interpreters)
shares the imported code copy-on-write, so a worker costs little memory.

* **Passive ports**: with ``--passive-ports``, each worker listens only on
  its own slice of the range (:func:`passive_slice`), so two workers never
  race for one port; without a range the kernel picks free ports anyway.
* **The port is reserved by the parent**: it binds (without listening) with
  ``SO_REUSEPORT`` first, which also resolves port 0 to one port every
  worker then shares. A socket that does not listen takes no connections.
* **Supervision**: the parent prints the ready line once, after every worker
  said it is listening, forwards SIGINT/SIGTERM (stop) and SIGHUP (reload
  TLS) to them, and if a worker dies unexpectedly it stops the others and
  exits non-zero, for the service manager to restart the whole server.
  Workers die with the parent (``PR_SET_PDEATHSIG``) even if it is killed.
* **What the workers share**: before forking, the parent maps the limit
  tables (:class:`~fileferry.limits.shared.SharedLimits`: anonymous shared
  memory and a process lock, inherited by every worker). So ``max_sessions``,
  ``max_sessions_per_ip``, a user's ``max_sessions``, the brute-force bans
  (failures seen by any worker add up; a ban holds on all of them) and
  quota usage, uploads in flight included, are exact for the whole server.
  Each worker counts its sessions and uploads in its own column of those
  tables; when a worker exits, the parent zeroes its column, so a crashed
  worker leaks nothing.
* **What stays per worker**: the sessions themselves, throttles (rates per
  worker add up), the command rate of a session and the login cache.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

from fileferry.config import ServerConfig, updated
from fileferry.errors import ConfigError
from fileferry.limits.shared import SharedLimits
from fileferry.limits.table import LockLost
from fileferry.server import eventloop
from fileferry.server.app import ListenError

log = logging.getLogger("fileferry.workers")

#: How long the parent waits for every worker to report that it listens.
READY_TIMEOUT = 60.0
_PR_SET_PDEATHSIG = 1


def passive_slice(ports: tuple[int, int] | None, index: int, count: int) -> tuple[int, int] | None:
    """Worker ``index``'s share of the passive range: contiguous, disjoint, covering it."""
    if ports is None or count <= 1:
        return ports
    lo, hi = ports
    total = hi - lo + 1
    if total < count:
        raise ValueError("fewer passive ports than workers")
    size, extra = divmod(total, count)
    start = lo + index * size + min(index, extra)
    end = start + size - 1 + (1 if index < extra else 0)
    return start, end


def worker_config(cfg: ServerConfig, index: int, port: int, implicit: int | None) -> ServerConfig:
    """The configuration worker ``index`` serves with: resolved ports, its passive slice."""
    return updated(
        cfg,
        port=port,
        tls_implicit_port=implicit,
        passive_ports=passive_slice(cfg.data.passive_ports, index, cfg.workers),
    )


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind ``port`` (0: a free one) with SO_REUSEPORT, without listening.

    Holding this socket keeps the port ours between the workers' binds, and
    since it never listens the kernel never hands it a connection.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
    except BaseException:
        sock.close()
        raise
    return sock


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the parent dies, so no worker outlives a killed server."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


async def _serve_worker(cfg: ServerConfig, ready: int, shared: SharedLimits | None) -> int:
    """One worker: the server's own life cycle, reporting readiness on a pipe."""
    import asyncio

    from fileferry.server.app import FTPServer

    try:
        server = FTPServer(cfg, shared=shared)
    except ConfigError as exc:  # e.g. a TLS certificate that cannot be loaded
        os.write(ready, f"C{exc}\n".encode())
        return 2
    try:
        await server.start()
    except OSError as exc:
        os.write(ready, f"E{exc.strerror or exc}\n".encode())
        await server.app.close()
        return 1
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reload_tls = getattr(server, "reload_tls", None)
    if reload_tls is not None:
        loop.add_signal_handler(signal.SIGHUP, reload_tls)
    os.write(ready, b"R")
    os.close(ready)
    await stop.wait()
    await server.stop()
    return 0


def _run_worker(cfg: ServerConfig, ready: int, shared: SharedLimits | None = None) -> None:
    """Entry point of a forked worker; never returns."""
    code = 1
    try:
        _die_with_parent()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        code = eventloop.run(_serve_worker(cfg, ready, shared))
    except KeyboardInterrupt:
        code = 0
    except BaseException:
        log.exception("worker failed")
    finally:
        logging.shutdown()
        os._exit(code)


class Supervisor:
    """The parent: forks the workers, waits for them, relays signals."""

    def __init__(self, cfg: ServerConfig, shared: SharedLimits | None = None) -> None:
        self.cfg = cfg
        #: The limit tables, mapped before the fork so every worker shares them.
        self.shared = shared
        self.children: dict[int, int] = {}  # pid -> worker index
        self.stopping = False

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._send(signal.SIGHUP)
            return
        self.stopping = True
        self._send(signal.SIGTERM)

    def _send(self, sig: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def spawn(self, configs: list[ServerConfig]) -> int:
        """Fork one worker per config; returns the read end of the readiness pipe."""
        read, write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        for index, cfg in enumerate(configs):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, which _exits
                os.close(read)
                shared = self.shared.for_worker(index) if self.shared is not None else None
                _run_worker(cfg, write, shared)
            self.children[pid] = index
        os.close(write)
        return read

    def wait_ready(self, read: int) -> tuple[str, int] | None:
        """None once every worker listens; else the first error a worker reported
        and the exit status it calls for (2: configuration, 1: anything else)."""
        ready = 0
        buffer = b""
        deadline = time.monotonic() + READY_TIMEOUT
        try:
            while ready < len(self.children):
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([read], [], [], left)[0]:
                    return "workers did not start in time", 1
                chunk = os.read(read, 4096)
                if not chunk:
                    return "a worker exited during start", 1
                buffer += chunk
                ready += buffer.count(b"R")
                buffer = buffer.replace(b"R", b"")
                if buffer[:1] in (b"E", b"C") and b"\n" in buffer:
                    message = buffer[1:].split(b"\n", 1)[0].decode(errors="replace")
                    return message, 2 if buffer[:1] == b"C" else 1
        finally:
            os.close(read)
        return None

    def wait(self) -> int:
        """Until every worker has exited; 0 if they only stopped because we asked."""
        code = 0
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            index = self.children.pop(pid, None)
            if index is None:
                continue
            if self.shared is not None:
                # Its sessions and uploads are gone with it: they must not hold a cap.
                try:
                    self.shared.reset_worker(index)
                except LockLost:
                    log.error("worker %d died holding the shared limits lock", index)
            exit_code = os.waitstatus_to_exitcode(status)
            if not self.stopping:
                log.error("worker %d (pid %d) exited with %d; stopping", index, pid, exit_code)
                self.stopping = True
                self._send(signal.SIGTERM)
                code = 1
            elif exit_code != 0:
                code = 1
        return code


#: What the parent reports once every worker listens: the address, the implicit
#: FTPS address (if any) and the self-signed certificate made at start (if any).
Announce = Callable[[tuple[str, int], tuple[str, int] | None, str | None], None]


class WorkerStartError(Exception):
    """A worker could not start (its message says why); the server did not start."""


def serve_workers(cfg: ServerConfig, announce: Announce) -> int:
    """Run ``cfg.workers`` worker processes; returns the exit status for the CLI.

    ``announce`` is called once every worker listens. A server that cannot
    start raises, for the CLI to report as it reports a single process's
    failures: ``ListenError`` (a port), ``ConfigError`` (e.g. a certificate a
    worker could not load) or :class:`WorkerStartError`.
    """
    try:
        main = reserve_port(cfg.host, cfg.port)
    except OSError as exc:
        raise ListenError(exc.errno, exc.strerror, cfg.port) from exc
    implicit_sock = None
    if cfg.tls.implicit_port is not None:
        try:
            implicit_sock = reserve_port(cfg.host, cfg.tls.implicit_port)
        except OSError as exc:
            main.close()
            raise ListenError(exc.errno, exc.strerror, cfg.tls.implicit_port) from exc
    port = main.getsockname()[1]
    implicit = implicit_sock.getsockname()[1] if implicit_sock is not None else None
    self_signed = None
    if cfg.tls.self_signed:
        # One certificate for all workers, made before forking: clients pin one fingerprint.
        from fileferry.server.tls import make_self_signed

        self_signed = make_self_signed([cfg.host])
        cfg = updated(
            cfg, tls_self_signed=False, tls_cert=self_signed.cert, tls_key=self_signed.key
        )
    supervisor = Supervisor(cfg, SharedLimits(cfg, cfg.workers))
    previous = {
        sig: signal.signal(sig, supervisor._signal)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    try:
        configs = [worker_config(cfg, i, port, implicit) for i in range(cfg.workers)]
        read = supervisor.spawn(configs)
        failed = supervisor.wait_ready(read)
        if failed is not None:
            supervisor.stopping = True
            supervisor._send(signal.SIGTERM)
            supervisor.wait()
            message, status = failed
            raise ConfigError(message) if status == 2 else WorkerStartError(message)
        host = main.getsockname()[0]
        announce(
            (host, port),
            (host, implicit) if implicit is not None else None,
            self_signed.cert if self_signed is not None else None,
        )
        return supervisor.wait()
    finally:
        if self_signed is not None:
            shutil.rmtree(self_signed.directory, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        main.close()
        if implicit_sock is not None:
            implicit_sock.close()
