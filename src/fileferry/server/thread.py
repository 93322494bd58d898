"""Run a server on a background thread: for test suites and blocking programs.

``with ServerThread(config) as server: ftplib.FTP().connect(*server.address)``
gives a real server on its own event loop, stopped cleanly on exit.

With ``config.workers > 1`` it runs that many servers, each on its own thread
and loop, splitting the passive range as ``--workers`` processes do (see
``server/workers.py``); ``server`` is the first of them. Unlike those
processes, which share one inherited socket, each thread listens on a
socket of its own, joined with ``SO_REUSEPORT``: the kernel then deals
connections by a hash, whereas threads racing for one socket under the GIL
let one of them win most accepts when the machine is loaded, and the tests
that need a session on each worker would wait for luck. Each has its own
sessions and loop; the limits they enforce together (session caps, bans,
account sessions, quotas) are in one
:class:`~fileferry.limits.shared.SharedLimits`, with a process lock, as
between worker processes. So a test suite run this way exercises what
changes when connections land on different workers. Stores passed in
(``users=``, ``storage_for=``) are shared, as a disk is shared between
worker processes; so are thread pools passed in (``pumps=``, ``executor=``),
which lets a test give the server a small pump pool and read its counters.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

from fileferry.config import ServerConfig
from fileferry.limits.shared import SharedLimits
from fileferry.server import eventloop
from fileferry.server.app import FTPServer
from fileferry.server.listen import bind_or_explain
from fileferry.server.workers import worker_config

T = TypeVar("T")


class ServerThread:
    def __init__(self, config: ServerConfig, **kwargs: Any) -> None:
        self._config = config
        self._kwargs = kwargs
        self._error: BaseException | None = None
        self.server: FTPServer | None = None
        #: Every worker's server (one unless ``config.workers > 1``).
        self.servers: list[FTPServer] = []
        self._loops: list[asyncio.AbstractEventLoop] = []
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        return self.server.address

    def start(self) -> ServerThread:
        count = max(1, self._config.workers)
        limits = SharedLimits(self._config, count) if count > 1 else None
        port, implicit = self._config.port, self._config.tls.implicit_port
        for index in range(count):
            cfg = self._config
            shared = None
            socks: tuple[socket.socket | None, ...] = (None, None)
            if limits is not None:
                # Later workers join the port the first one got (port 0 resolved).
                shared = limits.for_worker(index)
                main = bind_or_explain(cfg.host, port, reuse_port=True)
                port = main.getsockname()[1]
                other = None
                if implicit is not None:
                    other = bind_or_explain(cfg.host, implicit, reuse_port=True)
                    implicit = other.getsockname()[1]
                cfg = worker_config(self._config, index, port, implicit)
                socks = (main, other)
            self._start_one(index, count, cfg, shared, socks)
        self.server = self.servers[0]
        return self

    def _start_one(
        self,
        index: int,
        count: int,
        cfg: ServerConfig,
        shared: SharedLimits | None,
        socks: tuple[socket.socket | None, ...],
    ) -> None:
        ready = threading.Event()
        name = "fileferry-server" if count == 1 else f"fileferry-worker-{index}"
        thread = threading.Thread(
            target=self._main, args=(cfg, ready, shared, socks), name=name, daemon=True
        )
        self._threads.append(thread)
        thread.start()
        if not ready.wait(30):
            raise RuntimeError("server did not start within 30 s")
        if self._error is not None:
            self.stop()
            raise self._error

    def _main(
        self,
        cfg: ServerConfig,
        ready: threading.Event,
        shared: SharedLimits | None,
        socks: tuple[socket.socket | None, ...],
    ) -> None:
        eventloop.run(self._serve(cfg, ready, shared, socks))

    async def _serve(
        self,
        cfg: ServerConfig,
        ready: threading.Event,
        shared: SharedLimits | None,
        socks: tuple[socket.socket | None, ...],
    ) -> None:
        try:
            server = FTPServer(cfg, shared=shared, **self._kwargs)
            await server.start(*socks)
        except BaseException as exc:
            self._error = exc
            ready.set()
            return
        self.servers.append(server)
        self._loops.append(asyncio.get_running_loop())
        ready.set()
        await server.serve_forever()

    def call(self, make: Callable[[FTPServer], Awaitable[T]], timeout: float = 60) -> list[T]:
        """Run ``make(server)`` on each worker's own loop; for tests that inspect
        a live server (its sessions, its tasks) from the outside."""
        results = []
        for server, loop in zip(self.servers, self._loops, strict=True):
            fut = asyncio.run_coroutine_threadsafe(_as_coroutine(make(server)), loop)
            results.append(fut.result(timeout))
        return results

    def stop(self) -> None:
        for server, loop, thread in zip(self.servers, self._loops, self._threads, strict=False):
            if thread.is_alive():
                fut = asyncio.run_coroutine_threadsafe(server.stop(), loop)
                fut.result(30)
        for thread in self._threads:
            thread.join(30)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable
