"""The Python API: ``async with fileferry.connect(url) as ftp:``.

One ``Client`` stands for one server and login. It opens control
connections as they are needed (one for most things, N for a segmented
download or N parallel transfers) and closes them all on exit. Remote paths
are strings as the server names them, relative to the login directory unless
they start with ``/``; ``""`` is the login directory itself.

Every method raises a :class:`fileferry.client.errors.ClientError` subclass
whose ``exit_code`` says what kind of failure it was; the command line is
built on exactly these calls.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import BinaryIO

from fileferry.client import integrity, remote, transfer
from fileferry.client.connection import Connection, Options, raise_for
from fileferry.client.errors import RemoteError, UsageError
from fileferry.client.listing import RemoteEntry, parse_list, parse_mlsx
from fileferry.client.pool import Pool
from fileferry.client.transfer import Progress, TransferResult
from fileferry.client.urls import FTPURL, parse_url, resolve_credentials

__all__ = ["Client", "connect"]


class Client:
    """A connection (or several) to one FTP/FTPS server; use ``async with``."""

    def __init__(
        self,
        url: str | FTPURL,
        *,
        password: str | None = None,
        ca_file: str | None = None,
        insecure: bool = False,
        active: bool = False,
        timeout: float = 30.0,
        prompt: Callable[[str], str] | None = None,
    ) -> None:
        self.url = parse_url(url) if isinstance(url, str) else url
        self.options = Options(timeout=timeout, active=active, ca_file=ca_file, insecure=insecure)
        self._password = password
        self._prompt = prompt
        self._pool: Pool | None = None

    async def __aenter__(self) -> Client:
        credentials = resolve_credentials(self.url, password=self._password, prompt=self._prompt)
        self._pool = Pool(self.url, credentials, self.options)
        try:
            await self._pool.first()
        except BaseException:
            await self._pool.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pool is not None:
            await self._pool.close()

    @property
    def pool(self) -> Pool:
        if self._pool is None:
            raise UsageError("use the client inside 'async with'")
        return self._pool

    @property
    def features(self) -> tuple[str, ...]:
        """The server's FEAT lines."""
        return self.pool.features

    # --- looking around ---------------------------------------------------------

    async def stat(self, path: str) -> RemoteEntry:
        """Kind, size and modification time of ``path``; ``RemoteError`` if missing."""
        async with self.pool.connection() as conn:
            return await remote.remote_stat(conn, path)

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except RemoteError:
            return False
        return True

    async def _listing(self, conn: Connection, path: str) -> list[RemoteEntry]:
        if conn.has("MLST"):
            lines = await conn.read_lines(f"MLSD {path}".rstrip())
            parsed = [parse_mlsx(line, path) for line in lines]
        else:
            lines = await conn.read_lines(f"LIST {path}".rstrip())
            parsed = [parse_list(line, path) for line in lines]
        return sorted((e for e in parsed if e is not None), key=lambda e: e.name)

    async def list(self, path: str = "") -> list[RemoteEntry]:
        """The entries of directory ``path`` (a file lists as itself), sorted by name."""
        async with self.pool.connection() as conn:
            try:
                return await self._listing(conn, path)
            except RemoteError:
                entry = await remote.remote_stat(conn, path)
                if entry.is_dir:
                    raise
                return [entry]

    async def walk(
        self, path: str = ""
    ) -> AsyncIterator[tuple[str, builtins.list[RemoteEntry], builtins.list[RemoteEntry]]]:
        """Like ``os.walk``, top-down: ``(directory, subdirectories, files)``.

        The caller may prune by removing entries from the subdirectories list.
        Links and other kinds are neither followed nor reported.
        """
        pending = [path]
        while pending:
            directory = pending.pop(0)
            async with self.pool.connection() as conn:
                entries = await self._listing(conn, directory)
            dirs = [e for e in entries if e.is_dir]
            files = [e for e in entries if e.is_file]
            yield directory, dirs, files
            pending[:0] = [d.path for d in dirs]

    async def hash(self, path: str, algorithm: str | None = None) -> integrity.RemoteHash:
        """The server's digest of ``path`` (HASH or X*), strongest algorithm by default."""
        async with self.pool.connection() as conn:
            methods = integrity.methods(conn)
            if algorithm is not None:
                methods = [m for m in methods if m.algorithm == algorithm.upper()]
            if not methods:
                raise RemoteError(f"{self.url.host} offers no {algorithm or 'file'} digest", 502)
            return await integrity.remote_hash(conn, path, methods[0])

    # --- changing things ----------------------------------------------------------

    async def mkdir(self, path: str, *, parents: bool = False) -> None:
        """Create a directory; ``parents`` also makes missing ones above and accepts existing."""
        async with self.pool.connection() as conn:
            if not parents:
                raise_for(await conn.command(f"MKD {path}"), f"mkdir {path}")
                return
            await remote.ensure_dir(conn, path)

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        """Delete a file, or a directory (with everything in it when ``recursive``)."""
        entry = await self.stat(path)
        if not entry.is_dir:
            async with self.pool.connection() as conn:
                raise_for(await conn.command(f"DELE {path}"), f"rm {path}")
            return
        if recursive:
            dirs: list[str] = []
            async for directory, _, files in self.walk(path):
                dirs.append(directory)
                async with self.pool.connection() as conn:
                    for f in files:
                        raise_for(await conn.command(f"DELE {f.path}"), f"rm {f.path}")
            for directory in reversed(dirs[1:]):
                async with self.pool.connection() as conn:
                    raise_for(await conn.command(f"RMD {directory}"), f"rmdir {directory}")
        async with self.pool.connection() as conn:
            raise_for(await conn.command(f"RMD {path}"), f"rmdir {path}")

    async def rename(self, src: str, dst: str) -> None:
        async with self.pool.connection() as conn:
            reply = await conn.command(f"RNFR {src}")
            if reply.code != 350:
                raise_for(reply, f"mv {src}")
                raise RemoteError(f"mv {src}: {reply}", reply.code)
            raise_for(await conn.command(f"RNTO {dst}"), f"mv {src} {dst}")

    async def set_mtime(self, path: str, mtime: float) -> bool:
        """Set a remote file's modification time (MFMT); False if the server cannot."""
        async with self.pool.connection() as conn:
            return await remote.set_remote_mtime(conn, path, mtime)

    # --- moving files ---------------------------------------------------------------

    async def download(
        self,
        remote: str,
        local: str | os.PathLike[str] | BinaryIO,
        *,
        resume: bool = True,
        verify: bool = True,
        segments: int = 1,
        preserve_mtime: bool = False,
        progress: Progress | None = None,
    ) -> TransferResult:
        """Fetch a file, continuing an earlier partial download and verifying the result.

        ``segments`` > 1 fetches that many ranges over as many connections.
        """
        return await transfer.download(
            self.pool,
            remote,
            local,
            resume=resume,
            verify=verify,
            segments=segments,
            preserve_mtime=preserve_mtime,
            progress=progress,
        )

    async def upload(
        self,
        local: str | os.PathLike[str],
        remote: str,
        *,
        resume: bool | None = None,
        verify: bool = True,
        preserve_mtime: bool = False,
        progress: Progress | None = None,
    ) -> TransferResult:
        """Send a file; see :func:`fileferry.client.transfer.upload` for ``resume``."""
        return await transfer.upload(
            self.pool,
            local,
            remote,
            resume=resume,
            verify=verify,
            preserve_mtime=preserve_mtime,
            progress=progress,
        )


def connect(
    url: str | FTPURL,
    *,
    password: str | None = None,
    ca_file: str | None = None,
    insecure: bool = False,
    active: bool = False,
    timeout: float = 30.0,
    prompt: Callable[[str], str] | None = None,
) -> Client:
    """A client for ``ftp://`` or ``ftps://`` (explicit TLS) ``url``; use ``async with``.

    The password comes from ``password``, the URL, ``FILEFERRY_PASSWORD`` or
    ``~/.netrc``, in that order; ``prompt`` (e.g. ``getpass.getpass``) is asked
    last. ``ca_file`` trusts an extra CA for ftps; ``insecure`` skips checking
    the certificate; ``active`` makes the server connect back (PORT/EPRT).
    """
    return Client(
        url,
        password=password,
        ca_file=ca_file,
        insecure=insecure,
        active=active,
        timeout=timeout,
        prompt=prompt,
    )
