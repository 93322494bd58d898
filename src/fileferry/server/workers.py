"""Several worker processes on one port: how fileferry uses more than one core.

One asyncio loop runs on one core, so a 2-core machine serving 300 uploads
at once leaves half of itself idle. ``--workers N`` forks N processes after
the configuration is loaded; each runs its own event loop, thread pool and
sessions. Forking (rather than starting fresh interpreters) shares the
imported code copy-on-write, so a worker costs little memory.

* **One listening socket, bound by the parent**: the parent binds and
  listens (without ``SO_REUSEPORT``), and every worker inherits that very
  socket and accepts from it. So a second server on the same port, with
  workers or without, fails with "address already in use" as a second
  single process does; with ``SO_REUSEPORT`` on every worker's own socket,
  a second ``--workers`` server of the same user would have joined the
  group and the kernel would have split the clients between the two. The
  shared queue also means a connection waiting to be accepted survives the
  death of a worker: another one takes it.
* **Passive ports**: with ``--passive-ports``, each worker listens only on
  its own slice of the range (:func:`passive_slice`), so two workers never
  race for one port; without a range the kernel picks free ports anyway.
* **Supervision** (:mod:`fileferry.server.supervisor`): the parent prints
  the ready line once every worker listens, relays SIGHUP (reload TLS),
  turns SIGTERM/SIGINT into a drain of every worker, and restarts a worker
  that dies, in the same slot, with a backoff when it keeps dying; the
  others serve on meanwhile. Workers die with the parent
  (``PR_SET_PDEATHSIG``) even if it is killed.
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
* **Metrics** (``--metrics``): the parent binds the endpoint's socket too
  and every worker serves it; each counts in prometheus-client's
  multiprocess files in a directory made for this run, and a scrape sums
  them all (see ``observability/multiproc.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
from collections.abc import Callable

from fileferry.config import ServerConfig, updated
from fileferry.errors import ConfigError
from fileferry.limits.shared import SharedLimits
from fileferry.server import eventloop
from fileferry.server.listen import bind_or_explain
from fileferry.server.supervisor import Supervisor, WorkerStartError

log = logging.getLogger("fileferry.workers")

_PR_SET_PDEATHSIG = 1

__all__ = ["WorkerStartError", "passive_slice", "serve_workers", "worker_config"]


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


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGTERM when the parent dies, so no worker outlives a killed server."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


async def _serve_worker(
    cfg: ServerConfig,
    ready: int,
    shared: SharedLimits | None,
    sock: socket.socket,
    implicit_sock: socket.socket | None,
    metrics_sock: socket.socket | None = None,
) -> int:
    """One worker: the server's own life cycle, reporting readiness on a pipe."""
    import asyncio

    from fileferry.server.app import FTPServer
    from fileferry.server.signals import stop_on_signals

    try:
        server = FTPServer(cfg, shared=shared)
    except ConfigError as exc:  # e.g. a TLS certificate that cannot be loaded
        os.write(ready, f"C{exc}\n".encode())
        return 2
    try:
        await server.start(sock, implicit_sock, metrics_sock)
    except OSError as exc:
        os.write(ready, f"E{exc.strerror or exc}\n".encode())
        await server.app.close()
        return 1
    stopped = stop_on_signals(server, cfg.shutdown_grace, worker=True)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, server.hangup)
    os.write(ready, b"R")
    os.close(ready)
    await stopped
    return 0


def run_worker(
    cfg: ServerConfig,
    ready: int,
    shared: SharedLimits | None,
    sockets: tuple[socket.socket | None, ...],
    parent: int,
) -> None:
    """Entry point of a forked worker (signals still blocked by the parent); never returns."""
    code = 1
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        _die_with_parent(parent)
        main, *others = sockets
        assert main is not None
        code = eventloop.run(_serve_worker(cfg, ready, shared, main, *others))
    except KeyboardInterrupt:
        code = 0
    except BaseException:
        log.exception("worker failed")
    finally:
        logging.shutdown()
        os._exit(code)


#: What the parent reports once every worker listens: the address, the implicit
#: FTPS address (if any), the self-signed certificate made at start (if any)
#: and the metrics address (if any).
Announce = Callable[
    [tuple[str, int], tuple[str, int] | None, str | None, tuple[str, int] | None], None
]


def serve_workers(cfg: ServerConfig, announce: Announce) -> int:
    """Run ``cfg.workers`` worker processes; returns the exit status for the CLI.

    ``announce`` is called once every worker listens. A server that cannot
    start raises, for the CLI to report as it reports a single process's
    failures: ``ListenError`` (a port), ``ConfigError`` (e.g. a certificate a
    worker could not load) or :class:`WorkerStartError`.
    """
    main = bind_or_explain(cfg.host, cfg.port)
    implicit_sock = None
    if cfg.tls.implicit_port is not None:
        try:
            implicit_sock = bind_or_explain(cfg.host, cfg.tls.implicit_port)
        except OSError:
            main.close()
            raise
    port = main.getsockname()[1]
    implicit = implicit_sock.getsockname()[1] if implicit_sock is not None else None
    self_signed = None
    metrics_sock, metrics_dir = None, None
    try:
        if cfg.metrics.address is not None:
            from fileferry.observability import multiproc

            metrics_dir = multiproc.prepare_multiprocess_dir()  # before any worker exists
            metrics_sock = bind_or_explain(*cfg.metrics.address)
        if cfg.tls.self_signed:
            # One certificate for all workers, made before forking: clients pin one fingerprint.
            from fileferry.server.tls import make_self_signed

            self_signed = make_self_signed([cfg.host])
            cfg = updated(
                cfg, tls_self_signed=False, tls_cert=self_signed.cert, tls_key=self_signed.key
            )
        configs = [worker_config(cfg, i, port, implicit) for i in range(cfg.workers)]
        supervisor = Supervisor(
            configs, SharedLimits(cfg, cfg.workers), (main, implicit_sock, metrics_sock), run_worker
        )
        if metrics_dir is not None:
            directory = metrics_dir
            supervisor.on_exit = lambda pid: multiproc.forget_process(pid, directory)
        with supervisor.signals():
            failed = supervisor.start()
            if failed is not None:
                supervisor.stop()
                supervisor.run()
                message, status = failed
                raise ConfigError(message) if status == 2 else WorkerStartError(message)
            host = main.getsockname()[0]
            announce(
                (host, port),
                (host, implicit) if implicit is not None else None,
                self_signed.cert if self_signed is not None else None,
                metrics_sock.getsockname()[:2] if metrics_sock is not None else None,
            )
            return supervisor.run()
    finally:
        if self_signed is not None:
            shutil.rmtree(self_signed.directory, ignore_errors=True)
        main.close()
        for other in (implicit_sock, metrics_sock):
            if other is not None:
                other.close()
        if metrics_dir is not None:
            multiproc.remove_multiprocess_dir(metrics_dir)
