"""Fixtures for the storage contract suite: one backend per parameter, fresh per test."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fileferry.storage.base import Storage
from fileferry.storage.local import TEMP_PREFIX, LocalStorage
from fileferry.storage.memory import MemoryStorage

Body = Callable[[Storage], Awaitable[None]]


@dataclass
class Env:
    """A backend under test; ``root`` lets disk-backed runs inspect the real tree."""

    storage: Storage
    #: The directory on disk for the local backend, ``None`` for memory.
    root: Path | None

    def run(self, body: Body) -> None:
        # A plain event loop per test body: no asyncio plugin is available.
        asyncio.run(body(self.storage))

    def assert_no_temp_files(self) -> None:
        if self.root is None:
            return
        for _dirpath, dirnames, filenames in os.walk(self.root):
            leftovers = [n for n in dirnames + filenames if n.startswith(TEMP_PREFIX)]
            assert leftovers == []


# Local storage runs twice: metadata calls inline on the loop (the default on a
# local disk) and in the thread pool (network file systems): same contract.
@pytest.fixture(params=["memory", "local", "local-thread"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    if request.param == "memory":
        storage: Storage = MemoryStorage()
        root = None
    else:
        root = tmp_path / "root"
        root.mkdir()
        policy = "thread" if request.param == "local-thread" else "inline"
        storage = LocalStorage(root, fs_calls=policy)
    yield Env(storage, root)
    asyncio.run(storage.close())


@pytest.fixture(params=["inline", "thread"])
def disk(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[LocalStorage, Path, Path]]:
    """A LocalStorage, its root, and a sibling directory outside the jail."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    storage = LocalStorage(root, fs_calls=request.param)
    yield storage, root, outside
    asyncio.run(storage.close())
