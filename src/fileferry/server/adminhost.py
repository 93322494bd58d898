"""The server's side of the web admin: what it may see and do, and its listener.

Imported only when ``--admin`` is given (it pulls in the web libraries).
:class:`AdminHost` is the :class:`~fileferry.webadmin.model.Host` the admin
app talks to; it hands out the live sessions, the ban list, the login
caps, and the stores the composition root opened, and nothing else.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

from fileferry.config.hostport import split_host_port
from fileferry.errors import ConfigError
from fileferry.server.live import LiveSessions
from fileferry.server.rootusage import RootUsage
from fileferry.users.admins import AdminDirectory
from fileferry.users.base import Account
from fileferry.webadmin.model import StorageFigure, Usage
from fileferry.webadmin.service import AdminService
from fileferry.webadmin.stats import Stats

if TYPE_CHECKING:
    from fileferry.config import ServerConfig
    from fileferry.limits.interfaces import BanList, LoginChecks
    from fileferry.server.app import App
    from fileferry.server.control import ControlConnection
    from fileferry.webadmin.model import UserAdminStore


class _Closable(Protocol):
    async def close(self) -> None: ...


class AdminHost:
    def __init__(
        self,
        app: App,
        connections: dict[asyncio.Task[None], ControlConnection],
        store: UserAdminStore,
        admins: AdminDirectory,
    ) -> None:
        self._app = app
        self.live = LiveSessions(connections)
        self.users = store
        self.admins = admins
        #: The served bucket's background measurement (``None`` for a local root).
        self.root_usage: RootUsage | None = None

    @property
    def config(self) -> ServerConfig:
        return self._app.config

    @property
    def bans(self) -> BanList:
        return self._app.limits.bans

    @property
    def login_checks(self) -> LoginChecks:
        return self._app.limits.logins

    async def usage(self, account: Account) -> Usage | None:
        """The server's own quota figure (walked once if nobody logged in yet)."""
        if not account.has_quota:
            return None
        try:
            storage = self._app.storage_for(account)
        except (ConfigError, OSError):
            return None  # home gone: the page says "unknown"
        quota = await self._app.accounts.quota_for(account, storage)
        if quota is None:
            return None
        try:
            figure = quota.usage
        finally:
            quota.drop()
        return Usage(figure.bytes, figure.files)

    def disk(self) -> tuple[int, int] | None:
        """(used, total) of a local root; the status API's older, disk-only field."""
        figure = self.storage_usage()
        if figure.kind != "disk" or figure.used is None or figure.total is None:
            return None
        return figure.used, figure.total

    def storage_usage(self) -> StorageFigure:
        """A disk's usage now (one statvfs); a bucket's as the background count last found it.

        Only the served root is measured: homes and virtual folders elsewhere
        (another disk, a bucket) are not in the figure (docs/admin.md).
        """
        root = self._app.config.storage.root
        if self.root_usage is not None:
            return self.root_usage.figure()
        if not _on_disk(root):
            return StorageFigure("bucket", root, error="not measured")
        try:
            found = shutil.disk_usage(root.removeprefix("file://"))
        except OSError as exc:
            return StorageFigure("disk", root, error=exc.strerror or type(exc).__name__)
        return StorageFigure(
            "disk", root, used=found.used, total=found.total, measured_at=time.time()
        )

    def measure_root(self) -> RootUsage | None:
        """For a root that is not a local folder: its background measurement, started."""
        config = self._app.config
        root = config.storage.root
        if _on_disk(root):
            return None
        storage = self._app.storage_for(Account(name="-", home=root))
        self.root_usage = RootUsage(storage, root, config.admin.usage_interval)
        self.root_usage.start()
        return self.root_usage


def _on_disk(root: str) -> bool:
    return "://" not in root or root.startswith("file://")


async def start_admin(
    app: App,
    connections: dict[asyncio.Task[None], ControlConnection],
    store: object,
    bind: Callable[[str, int], socket.socket],
) -> AdminService:
    """Serve the admin on ``--admin``'s address, counting events for the dashboard.

    ``store``: the user database, which must hold administrators too
    (:class:`~fileferry.users.admins.AdminDirectory`). Under
    ``--tls-cert``/``--tls-key`` (or a self-signed certificate) the admin
    is HTTPS with the same certificate as FTPS.
    """
    closer = cast("_Closable", store)
    if not isinstance(store, AdminDirectory):
        await closer.close()
        raise ConfigError("admin: this user database cannot hold administrators")
    assert app.config.admin.listen is not None
    try:
        sock = bind(*split_host_port(app.config.admin.listen))
    except BaseException:
        await closer.close()
        raise
    host: AdminHost | None = None
    try:
        stats = Stats()
        tls = (app.tls.cert, app.tls.key) if app.tls is not None else None
        host = AdminHost(app, connections, cast("UserAdminStore", store), store)
        measuring = host.measure_root()

        async def release() -> None:
            if measuring is not None:
                await measuring.close()
            await closer.close()

        service = AdminService(host, stats, sock, tls, release)
        await service.start()
    except BaseException:
        sock.close()
        if host is not None and host.root_usage is not None:
            await host.root_usage.close()
        await closer.close()
        raise
    app.dispatcher.add(stats)
    return service
