"""The composition root: where configuration, storage, users and sockets meet.

Nothing else in fileferry constructs a storage backend or a user store for
the server; swapping local disk for S3, or the static users for SQLite, is a
change here (or a constructor argument from an embedding program) and
nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

from fileferry.config import ServerConfig
from fileferry.protocol.commands import CoreConfig
from fileferry.server.control import ControlConnection
from fileferry.server.handlers.site import EXEC_PERMISSION
from fileferry.storage.base import Storage
from fileferry.users.base import ALL_PERMISSIONS, READ_ONLY, Account, UserStore
from fileferry.users.static import StaticUser, StaticUserStore

log = logging.getLogger("fileferry.server")

StorageFactory = Callable[[Account], Storage]


def default_users(config: ServerConfig) -> UserStore:
    """Users from ``--user``/``[[user]]`` plus anonymous, as the config says."""
    users = [
        StaticUser(
            Account(
                name=u.name,
                home=os.path.abspath(os.path.expanduser(u.home)) if u.home else config.root,
                permissions=(ALL_PERMISSIONS if u.write else READ_ONLY)
                + (EXEC_PERMISSION if u.site_exec else ""),
            ),
            u.password_hash,
        )
        for u in config.users
    ]
    anonymous = None
    if config.anonymous:
        perms = ALL_PERMISSIONS if config.write else READ_ONLY
        anonymous = Account("anonymous", config.root, perms, anonymous=True)
    return StaticUserStore(users, anonymous)


class LocalStorageProvider:
    """One ``LocalStorage`` per home folder, all sharing one thread pool."""

    def __init__(self, config: ServerConfig) -> None:
        from fileferry.storage.local import make_executor

        self._config = config
        self._executor = make_executor()
        self._storages: dict[str, Storage] = {}

    def __call__(self, account: Account) -> Storage:
        from fileferry.storage.local import LocalStorage

        storage = self._storages.get(account.home)
        if storage is None:
            storage = LocalStorage(
                account.home, fsync_uploads=self._config.fsync_uploads, executor=self._executor
            )
            self._storages[account.home] = storage
        return storage

    async def close(self) -> None:
        for storage in self._storages.values():
            await storage.close()
        await asyncio.to_thread(self._executor.shutdown, wait=True)


class App:
    """Shared state of one server: config, stores, and the live sessions."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        users: UserStore | None = None,
        storage_for: StorageFactory | None = None,
    ) -> None:
        self.config = config
        self.users = users or default_users(config)
        self._provider = None if storage_for else LocalStorageProvider(config)
        self.storage_for: StorageFactory = storage_for or self._provider  # type: ignore[assignment]
        site = (("EXEC", "EXEC [name [args]]: run a command the operator allowed"),)
        self.core_config = CoreConfig(
            max_line=config.max_line,
            site_commands=site if config.site_exec else (),
        )
        self.sessions: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Release what the composition root created (not what was passed in)."""
        await self.users.close()
        if self._provider is not None:
            await self._provider.close()


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket; ``::`` is dual stack (IPv4 clients too)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
        sock.listen(1024)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class FTPServer:
    """A running fileferry server; use ``async with FTPServer(config):`` or start/stop."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        users: UserStore | None = None,
        storage_for: StorageFactory | None = None,
    ) -> None:
        self.app = App(config, users=users, storage_for=storage_for)
        self._server: asyncio.Server | None = None
        self._stopped = asyncio.Event()

    @property
    def config(self) -> ServerConfig:
        return self.app.config

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually listened on (port 0 resolved)."""
        assert self._server is not None, "server not started"
        name = self._server.sockets[0].getsockname()
        return name[0], name[1]

    @property
    def url(self) -> str:
        host, port = self.address
        return f"ftp://[{host}]:{port}" if ":" in host else f"ftp://{host}:{port}"

    async def start(self) -> None:
        sock = bind_socket(self.config.host, self.config.port)
        self._server = await asyncio.start_server(self._on_connect, sock=sock, limit=2**16)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock: socket.socket | None = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                # Telnet "urgent" bytes (sent with ABOR) stay in the stream to be parsed.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        task = asyncio.current_task()
        assert task is not None
        self.app.sessions.add(task)
        try:
            await ControlConnection(self.app, reader, writer).run()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("session crashed")
        finally:
            self.app.sessions.discard(task)

    async def serve_forever(self) -> None:
        await self._stopped.wait()

    async def stop(self) -> None:
        """Stop accepting, end every session (aborting uploads), release stores."""
        if self._server is not None:
            self._server.close()
        sessions = list(self.app.sessions)
        for task in sessions:
            task.cancel()
        if sessions:
            await asyncio.wait(sessions, timeout=10)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        await self.app.close()
        self._stopped.set()

    async def __aenter__(self) -> FTPServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
