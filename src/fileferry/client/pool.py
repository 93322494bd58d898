"""Logged-in connections to one server, opened on demand and reused.

Segmented downloads and parallel transfers each need several control
connections at once; everything else needs one. The pool hands out an idle
connection or opens a new one, takes it back afterwards, and drops any that
broke (a timed-out reply, a transfer cut off half-way) so that no caller
ever inherits a connection whose replies are out of step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fileferry.client.connection import Connection, Options
from fileferry.client.urls import FTPURL, Credentials


class Pool:
    def __init__(self, url: FTPURL, credentials: Credentials, options: Options) -> None:
        self.url = url
        self.credentials = credentials
        self.options = options
        self._idle: list[Connection] = []
        self._all: set[Connection] = set()

    async def _open(self) -> Connection:
        conn = Connection(self.url, self.credentials, self.options)
        self._all.add(conn)
        try:
            await conn.open()
        except BaseException:
            self._all.discard(conn)
            await conn.close()
            raise
        return conn

    async def first(self) -> Connection:
        """Open (or reuse) one connection and keep it idle: the pool's 'is it reachable' check."""
        async with self.connection() as conn:
            return conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        conn = self._idle.pop() if self._idle else await self._open()
        try:
            yield conn
        finally:
            if conn.broken:
                self._all.discard(conn)
                await conn.close()
            else:
                self._idle.append(conn)

    @property
    def features(self) -> tuple[str, ...]:
        """FEAT of the server (all connections of a pool talk to the same one)."""
        for conn in (*self._idle, *self._all):
            return conn.features
        return ()

    async def close(self) -> None:
        conns, self._all, self._idle = list(self._all), set(), []
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
