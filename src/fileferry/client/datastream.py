"""The data connection of one transfer, as the transfer code reads and writes it.

Every read and write gives up after the client's timeout, and turns the
socket's and TLS's failures into :class:`ConnectionFailed`, so the transfer
code deals with one kind of network failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from fileferry.client.errors import ConnectionFailed

#: Stream buffer for data connections: big reads, few wake-ups.
DATA_LIMIT = 1 << 20


class DataStream:
    """The data connection of one transfer; reads and writes give up after ``timeout``."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        #: Set by a reader that stops before the end (a segment): 426 is then expected.
        self.stopped_early = False

    async def read(self, n: int = DATA_LIMIT) -> bytes:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.reader.read(n)
        except TimeoutError:
            raise ConnectionFailed(f"data connection stalled for {self.timeout:g} s") from None
        except (ConnectionError, ssl.SSLError) as exc:
            raise ConnectionFailed(f"data connection broke: {exc}") from None

    async def write(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            async with asyncio.timeout(self.timeout):
                await self.writer.drain()
        except TimeoutError:
            raise ConnectionFailed(f"data connection stalled for {self.timeout:g} s") from None
        except (ConnectionError, ssl.SSLError) as exc:
            raise ConnectionFailed(f"data connection broke: {exc}") from None
        if self.writer.transport.is_closing():
            # Cut under us (the server answered first): a drain then returns
            # quietly and further writes would vanish without a word.
            raise ConnectionFailed("data connection closed while sending")

    async def finish(self) -> None:
        """End of our side: under TLS this sends close_notify, which the server awaits."""
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError, OSError):
            async with asyncio.timeout(self.timeout):
                await self.writer.wait_closed()

    def abort(self) -> None:
        self.stopped_early = True
        self.writer.transport.abort()

    def cut(self, _ending: object = None) -> None:
        """The server gave its final reply while we still send: it reads no more,
        so drop the data connection and wake a write blocked on it."""
        self.writer.transport.abort()
