"""Run a server on a background thread: for test suites and blocking programs.

``with ServerThread(config) as server: ftplib.FTP().connect(*server.address)``
gives a real server on its own event loop, stopped cleanly on exit.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any

from fileferry.config import ServerConfig
from fileferry.server.app import FTPServer


class ServerThread:
    def __init__(self, config: ServerConfig, **kwargs: Any) -> None:
        self._config = config
        self._kwargs = kwargs
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.server: FTPServer | None = None
        self._thread = threading.Thread(target=self._main, name="fileferry-server", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        assert self.server is not None
        return self.server.address

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("server did not start within 30 s")
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self.server = FTPServer(self._config, **self._kwargs)
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self.server.serve_forever()

    def stop(self) -> None:
        if self._loop is not None and self.server is not None and self._thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop)
            fut.result(30)
        self._thread.join(30)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
