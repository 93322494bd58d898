"""Folder listings that span many ``ListObjectsV2`` pages, on SeaweedFS.

A small page size (``s3tree.LIST_PAGE``) makes a few hundred keys cross
dozens of pages, so page joins (continuation tokens, folders and files
split across pages, encoded names) are proven cheaply. (A folder of 20,000
keys takes ~35 s to make on SeaweedFS on two busy cores, over the test
budget; ``bench/s3.py --only list --keys 100000`` measures the big case.)
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fileferry.storage import s3tree

#: Names that need care on the way through a listing: encoded, or plus/space confusable.
ODD = ["a b.txt", "a+b.txt", "100%.txt", "é ü.txt", "semi;colon", "x&y<z>.txt"]


async def _put_all(storage: Any, keys: list[str], parallel: int = 64) -> None:
    import obstore

    gate = asyncio.Semaphore(parallel)

    async def put(key: str) -> None:
        async with gate:
            await obstore.put_async(storage.store, key, b"x" * (len(key) % 7))

    await asyncio.gather(*(put(k) for k in keys))


def test_listing_joins_many_small_pages(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3tree, "LIST_PAGE", 7)
    prefix = s3.prefix_for_test
    files = [f"f{i:04d}.bin" for i in range(200)] + ODD
    folders = [f"d{i:03d}" for i in range(40)]
    keys = [f"{prefix}/dir/{n}" for n in files]
    keys += [f"{prefix}/dir/{d}/inner{j}" for d in folders for j in range(3)]
    keys += [f"{prefix}/elsewhere/{n}" for n in files[:20]]

    async def body() -> list[Any]:
        await _put_all(s3, keys)
        await s3.mkdir("/dir/empty")  # a marker "dir/empty/": a folder, not a file
        return await s3.list("/dir")

    listed = asyncio.run(body())
    got = {(e.name, e.is_dir, e.size) for e in listed}
    want = {(n, False, len(f"{prefix}/dir/{n}") % 7) for n in files}
    want |= {(d, True, 0) for d in [*folders, "empty"]}
    assert len(listed) == len(got) == len(want) == 247
    assert got == want
