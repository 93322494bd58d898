"""The data-path chooser: which route each kind of transfer takes, for real readers and uploads.

``server/datapath/choose.py`` is the one place that picks ``sendfile``,
``splice``, a TLS pump or the loop; these tables pin its rules, with the
readers and uploads that the storages (and their wrappers) really return.
End-to-end outcomes over each route are in ``test_transfers.py``,
``tests/perf/test_splice.py`` and ``tests/tls/test_tlspump.py``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from fileferry.limits.interfaces import Figure
from fileferry.limits.ledger import LocalLedger
from fileferry.server.datapath import Download, Receive
from fileferry.server.datapath.choose import CAN_SPLICE, download, receive
from fileferry.storage.base import Storage
from fileferry.storage.local import LocalStorage
from fileferry.storage.memory import MemoryStorage
from fileferry.storage.mounts import Mount, MountedStorage
from fileferry.storage.quota import QuotaStorage

SPLICE = Receive.SPLICE if CAN_SPLICE else Receive.LOOP


# Each factory: (the storage under test, the local storage inside it to close, if any).
Made = tuple[Storage, LocalStorage | None]


def _local(root: Path) -> Made:
    local = LocalStorage(root)
    return local, local


def _memory(root: Path) -> Made:
    return MemoryStorage(), None


def _mounted(root: Path) -> Made:
    """The file lives in a local mount of a memory home."""
    local = LocalStorage(root)
    return MountedStorage(MemoryStorage(), [Mount("/m", local)]), local


def _quota(root: Path) -> Made:
    local = LocalStorage(root)
    account = LocalLedger().open_with("quota", Figure(0, 0))
    account.quota_bytes = 1 << 30
    return QuotaStorage(local, account), local


# name: (storage factory, path, download routes (plain, TLS), upload routes (plain, TLS))
CASES: dict[str, tuple[Callable[[Path], Made], str, tuple, tuple]] = {
    "local": (
        _local,
        "/f",
        (Download.SENDFILE, Download.TLS_PUMP),
        (SPLICE, Receive.TLS_PUMP_DIRECT),
    ),
    "memory": (_memory, "/f", (Download.LOOP, Download.LOOP), (Receive.LOOP, Receive.TLS_PUMP)),
    "mounted": (
        _mounted,
        "/m/f",
        (Download.SENDFILE, Download.TLS_PUMP),
        (SPLICE, Receive.TLS_PUMP_DIRECT),
    ),
    # Quota: reads untouched, uploads spliced and written by the pump thread, each with
    # a reservation first (the one-worker ledger decides every take on the spot).
    "quota": (
        _quota,
        "/f",
        (Download.SENDFILE, Download.TLS_PUMP),
        (SPLICE, Receive.TLS_PUMP_DIRECT),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_routes_follow_what_the_objects_offer(name: str, tmp_path: Path) -> None:
    make, path, downloads, uploads = CASES[name]

    async def body() -> None:
        storage, local = make(tmp_path)
        caps = storage.capabilities
        upload = await storage.open_write(path)
        await upload.write(b"x" * 1000)
        await upload.commit()
        reader = await storage.open_read(path)
        upload = await storage.open_write(path)
        try:
            for plain, want in zip((True, False), downloads, strict=True):
                assert download(reader, caps, plain=plain, ascii=False, throttled=False) is want
            for plain, want in zip((True, False), uploads, strict=True):
                assert receive(upload, caps, plain=plain, ascii=False, throttled=False) is want
            # ASCII always goes through the loop, which converts line ends.
            for plain in (True, False):
                assert download(reader, caps, plain=plain, ascii=True, throttled=False) is (
                    Download.LOOP
                )
                assert receive(upload, caps, plain=plain, ascii=True, throttled=False) is (
                    Receive.LOOP
                )
                # Throttled uploads are read and paced by the loop.
                assert receive(upload, caps, plain=plain, ascii=False, throttled=True) is (
                    Receive.LOOP
                )
            # Throttled downloads keep sendfile (paced) in cleartext only.
            paced = Download.SENDFILE_PACED if downloads[0] is Download.SENDFILE else Download.LOOP
            assert download(reader, caps, plain=True, ascii=False, throttled=True) is paced
            assert download(reader, caps, plain=False, ascii=False, throttled=True) is (
                Download.LOOP
            )
        finally:
            await reader.close()
            await upload.abort()
            if local is not None:
                await local.close()

    asyncio.run(body())
    assert not [p for p in os.listdir(tmp_path) if p != "f"]


def test_a_capability_not_claimed_is_not_used(tmp_path: Path) -> None:
    """The storage's claim gates the route: an object's fast path alone is not enough."""

    async def body() -> None:
        storage = LocalStorage(tmp_path)
        try:
            upload = await storage.open_write("/f")
            await upload.write(b"data")
            await upload.commit()
            none = replace(
                storage.capabilities, sendfile=False, splice=False, blocking_writes=False
            )
            async with await storage.open_read("/f") as reader:
                assert download(reader, none, plain=True, ascii=False, throttled=False) is (
                    Download.LOOP
                )
            upload = await storage.open_write("/g")
            assert receive(upload, none, plain=True, ascii=False, throttled=False) is Receive.LOOP
            assert receive(upload, none, plain=False, ascii=False, throttled=False) is (
                Receive.TLS_PUMP
            )
            await upload.abort()
        finally:
            await storage.close()

    asyncio.run(body())
