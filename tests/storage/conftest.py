"""Fixtures of the storage tests: the built-in backends for the contract, and a jailed disk."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from storagekit import BUILTIN, SERVICES, Backend, builtin

from fileferry.storage.local import LocalStorage


@pytest.fixture(params=list(BUILTIN) + list(SERVICES))
def storage_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each built-in backend in turn, fresh per test (see ``storagekit``).

    A backend on a service (S3 on SeaweedFS) starts it once per session.
    """
    if request.param in SERVICES:
        fixture, make = SERVICES[request.param]
        backend = make(request.getfixturevalue(fixture))
        try:
            yield backend
        finally:
            backend.close()
        return
    yield from builtin(request.param, tmp_path)


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
