"""A scripted FTP server for the client tests: it says exactly what a test makes it say.

Real servers (fileferry, pyftpdlib) answer correctly; these tests need one
that lies about its passive address, connects from the wrong host or sends
replies no server should. It runs in the test's own event loop on a real
loopback socket, reads command lines and hands each to the test's handler
for its verb; verbs without one get the polite defaults a login needs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from types import TracebackType

#: How long a scripted step waits for the client before the test fails.
WAIT = 10.0

Handler = Callable[["Control", str], Awaitable[None]]


class Control:
    """One control connection of the scripted server, as its handlers see it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._data: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self._listener: asyncio.Server | None = None
        #: Where the passive data connections came from.
        self.data_peers: list[str] = []

    async def send(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        self.writer.write(data)
        await self.writer.drain()

    async def listen(self) -> int:
        """A passive data listener on 127.0.0.1; returns its port."""

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.data_peers.append(writer.get_extra_info("peername")[0])
            await self._data.put((reader, writer))

        if self._listener is None:
            self._listener = await asyncio.start_server(accepted, "127.0.0.1", 0)
        return int(self._listener.sockets[0].getsockname()[1])

    async def data_connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with asyncio.timeout(WAIT):
            return await self._data.get()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def reply(text: str) -> Handler:
    """A handler that answers one fixed reply line."""

    async def answer(ctl: Control, arg: str) -> None:
        await ctl.send(text + "\r\n")

    return answer


DEFAULTS: dict[str, Handler] = {
    "USER": reply("331 password please"),
    "PASS": reply("230 logged in"),
    "FEAT": reply("211 no extensions"),
    "TYPE": reply("200 binary"),
}


class ScriptedServer:
    """``async with ScriptedServer({...}) as server:``, then connect to ``server.url``."""

    def __init__(
        self, handlers: dict[str, Handler], greeting: bytes = b"220 scripted server\r\n"
    ) -> None:
        self.handlers = {**DEFAULTS, **handlers}
        self.greeting = greeting
        self.commands: list[str] = []
        self.controls: list[Control] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ftp://tester@127.0.0.1:{port}/"

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for ctl in self.controls:
            await ctl.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        ctl = Control(reader, writer)
        self.controls.append(ctl)
        try:
            await ctl.send(self.greeting)
            while line := await reader.readline():
                text = line.decode("utf-8", "surrogateescape").rstrip("\r\n")
                self.commands.append(text)
                verb, _, arg = text.partition(" ")
                verb = verb.upper()
                if verb == "QUIT":
                    await ctl.send("221 bye\r\n")
                    break
                handler = self.handlers.get(verb, reply(f"502 {verb} not scripted"))
                await handler(ctl, arg)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client hung up: that is its right
        finally:
            await ctl.close()
