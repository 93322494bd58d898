"""What the stop signals mean to a running server: the first drains, a second stops now.

SIGTERM (a service manager) or SIGINT (Ctrl-C) closes the listeners, tells
idle sessions 421 and gives running transfers ``shutdown_grace`` seconds to
finish (:meth:`FTPServer.stop`); another such signal meanwhile aborts what
still runs at once (426 on the transfer, 421 on the session, uploads
discarded). Either way the server ends in order, never by a reset.

A worker of ``--workers N`` reads its signals differently: a Ctrl-C
reaches the parent and every worker at once, and a service manager may
signal the whole group too, so one operator action can land twice on a
worker. Its SIGTERM and SIGINT only ever drain; "now" comes from its
parent alone, as SIGUSR1, which the parent sends when it got a second
signal itself.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fileferry.server.app import FTPServer

log = logging.getLogger("fileferry")

#: What a worker's parent sends to say "stop now" (see the module docstring).
STOP_NOW = signal.SIGUSR1


def stop_on_signals(
    server: FTPServer, grace: float, *, worker: bool = False
) -> asyncio.Future[None]:
    """Install the handlers on the running loop; the future is done once ``server`` stopped."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    stops: list[asyncio.Task[None]] = []

    def finished(task: asyncio.Task[None]) -> None:
        if done.done():
            return
        exc = None if task.cancelled() else task.exception()
        if exc is None:
            done.set_result(None)
        else:
            done.set_exception(exc)

    def drain() -> None:
        if stops:
            return
        log.info("stopping: running transfers get %g s (a second signal stops at once)", grace)
        task = loop.create_task(server.stop(grace))
        task.add_done_callback(finished)
        stops.append(task)

    def now() -> None:
        drain()
        log.info("stopping now")
        stops.append(loop.create_task(server.stop()))

    def stop_signal() -> None:
        if stops and not worker:
            now()
        else:
            drain()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_signal)
    if worker:
        loop.add_signal_handler(STOP_NOW, now)
    return done
