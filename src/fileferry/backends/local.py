"""Local disk storage: ``root`` (and every home) is a folder of this machine."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fileferry.backends import scheme_of, storage_backend
from fileferry.errors import ConfigError
from fileferry.storage.mounts import Mount, MountedStorage

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from fileferry.config.model import ServerConfig
    from fileferry.storage.base import Capabilities, Storage
    from fileferry.storage.localsweep import Swept
    from fileferry.users.base import Account


def check(location: str) -> str:
    """The folder's absolute, resolved path; it must exist and be readable."""
    if location.startswith("file://"):
        location = location[len("file://") :]
    root = Path(location).expanduser()
    if not root.is_dir():
        raise ConfigError(f"root: {location!r} is not a directory")
    problem = unreadable(str(root))
    if problem is not None:
        raise ConfigError(f"root: {location!r} cannot be read ({problem})")
    return str(root.resolve())


def unreadable(folder: str) -> str | None:
    """Why this process cannot list ``folder`` and open what is in it; ``None`` if it can.

    A served folder the server cannot read answers 550 to every command,
    which looks like a client's mistake; found at start, it is one line
    naming the folder. Listing needs read permission and reaching the files
    needs search (x) permission; root passes both unless it lacks
    CAP_DAC_OVERRIDE. Only the first entry is read, so a huge folder costs
    nothing.
    """
    try:
        with os.scandir(folder) as entries:
            next(entries, None)
    except OSError as exc:
        return exc.strerror or str(exc)
    if not os.access(folder, os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        return os.strerror(errno.EACCES)
    return None


class LocalStorageProvider:
    """One ``LocalStorage`` per folder, all sharing one thread pool.

    It is every server's provider, whatever its ``root``: a home or virtual
    folder given as a URL (``s3://...``) is opened by the backend of its
    scheme (``locations(config).storage(url)``), so a local home can mount a
    bucket and a bucket root can hold local homes.
    """

    def __init__(self, config: ServerConfig, executor: ThreadPoolExecutor | None = None) -> None:
        from fileferry.storage.local import make_executor

        self._fsync = config.storage.fsync_uploads
        self._fs_calls = config.storage.fs_calls
        self._resumable = config.storage.resumable_uploads
        self._config = config
        self._root = check(config.storage.root) if scheme_of(config.storage.root) == "file" else ""
        self._executor = executor or make_executor()
        self._storages: dict[str, Storage] = {}
        self._elsewhere: dict[str, Any] = {}
        if not self._root:
            self._local(config.storage.root)  # a bucket root: opened now, so it is swept

    def _local(self, directory: str) -> Storage:
        from fileferry.storage.local import LocalStorage

        scheme = scheme_of(directory)
        if scheme != "file":
            opener = self._elsewhere.get(scheme)
            if opener is None:
                opener = storage_backend(directory).locations(self._config)  # type: ignore[attr-defined]
                self._elsewhere[scheme] = opener
            return opener.storage(directory)  # type: ignore[no-any-return]
        storage = self._storages.get(directory)
        if storage is None:
            storage = LocalStorage(
                directory,
                fsync_uploads=self._fsync,
                executor=self._executor,
                fs_calls=self._fs_calls,
                resumable_uploads=self._resumable,
            )
            self._storages[directory] = storage
        return storage

    @property
    def capabilities(self) -> Capabilities:
        """What FEAT describes before login: the root's backend (a bucket has no modes)."""
        from fileferry.storage.base import Capabilities

        if self._root:
            return Capabilities()
        return self._local(self._config.storage.root).capabilities

    def __call__(self, account: Account) -> Storage:
        """The home, with the account's virtual folders mounted into it."""
        home = self._local(account.home)
        if not account.virtual_folders:
            return home
        mounts = [
            Mount(f.path, self._local(f.source), f.read_only) for f in account.virtual_folders
        ]
        return MountedStorage(home, mounts)

    async def sweep(self, temp_max_age: float, partial_max_age: float) -> list[Swept]:
        """Sweep the served folder and every home in use (``storage/localsweep.py``).

        A folder inside another one in the list is covered by that one's walk.
        """
        if self._root:
            self._local(self._root)
        folders = sorted(self._storages)
        outer = [d for d in folders if not any(d.startswith(o.rstrip("/") + "/") for o in folders)]
        swept = [
            await self._storages[d].sweep(temp_max_age, partial_max_age)  # type: ignore[attr-defined]
            for d in outer
        ]
        for opener in self._elsewhere.values():
            if hasattr(opener, "sweep"):
                swept += await opener.sweep(temp_max_age, partial_max_age)
        return swept

    async def close(self) -> None:
        for storage in self._storages.values():
            await storage.close()
        for opener in self._elsewhere.values():
            await opener.close()
        await asyncio.to_thread(self._executor.shutdown, wait=True)


def provider(config: ServerConfig) -> LocalStorageProvider:
    return LocalStorageProvider(config)
