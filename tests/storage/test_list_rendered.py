"""``list_rendered``: each fast path gives the same bytes as the generic fallback.

The fallback (``Storage.list_rendered``, built on ``list``) is the reference;
the local backend scans and renders in its worker thread, and the mounted
storage adjusts rows wherever the routed storage renders them. The folder
here has everything that has a rule: a subdirectory, a name that is not
UTF-8, symlinks inside, outside and dangling, a hidden upload, a mount point.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from fileferry.errors import NotADirectory, NotFound
from fileferry.protocol.listing import DEFAULT_FACTS, ListingRenderer
from fileferry.storage.base import Storage
from fileferry.storage.local import TEMP_PREFIX, LocalStorage
from fileferry.storage.memory import MemoryStorage
from fileferry.storage.mounts import Mount, MountedStorage

NOW = 1_718_452_800.0
FORMATS = ("LIST", "NLST", "MLSD")


def renderer(fmt: str, cap: int | None = None) -> ListingRenderer:
    return ListingRenderer(fmt, NOW, DEFAULT_FACTS, "elradfmw", cap)


async def both(storage: Storage, path: str, fmt: str, cap: int | None = None) -> tuple:
    """(fast path, generic fallback) for the same listing."""
    limit = None if cap is None else cap + 1
    fast = await storage.list_rendered(path, renderer(fmt, cap), limit)
    generic = await Storage.list_rendered(storage, path, renderer(fmt, cap), limit)
    return fast, generic


def populate(root: Path, outside: Path) -> None:
    folder = root / "folder"
    folder.mkdir()
    (folder / "sub").mkdir()
    (folder / "plain.txt").write_bytes(b"hello")
    os.chmod(folder / "plain.txt", 0o640)
    (folder / "empty").write_bytes(b"")
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.bin"), "wb") as f:
        f.write(b"xyz")  # Latin-1 name: not UTF-8
    (folder / "link-in").symlink_to(folder / "plain.txt")
    (folder / "link-dir").symlink_to(folder / "sub")
    (folder / "link-out").symlink_to(outside / "secret.txt")
    (folder / "dangling").symlink_to(folder / "nowhere")
    (folder / f"{TEMP_PREFIX}pending").write_bytes(b"half")
    for i in range(25):
        (folder / f"n{i:02d}").write_bytes(b"x" * i)


@pytest.fixture
def tree(disk: tuple[LocalStorage, Path, Path]) -> tuple[LocalStorage, Path]:
    storage, root, outside = disk
    populate(root, outside)
    return storage, root


@pytest.mark.parametrize("fmt", FORMATS)
def test_local_fast_path_equals_fallback(tree: tuple[LocalStorage, Path], fmt: str) -> None:
    storage, _ = tree
    fast, generic = asyncio.run(both(storage, "/folder", fmt))
    assert fast == generic
    assert fast.count == 31 and not fast.truncated  # 25 + 6: no escape, dangle or temp


def test_local_listing_content(tree: tuple[LocalStorage, Path]) -> None:
    storage, _ = tree
    fast, _ = asyncio.run(both(storage, "/folder", "NLST"))
    names = fast.payload.split(b"\r\n")[:-1]
    assert names == sorted(names, key=lambda n: n.decode("utf-8", "surrogateescape"))
    assert b"caf\xe9.bin" in names and b"sub" in names and b"link-in" in names
    assert b"link-out" not in names and b"dangling" not in names
    assert not any(n.startswith(TEMP_PREFIX.encode()) for n in names)
    lines = asyncio.run(both(storage, "/folder", "LIST"))[0].payload.split(b"\r\n")
    by_name = {line.rsplit(b" ", 1)[-1]: line for line in lines if line}
    assert by_name[b"sub"].startswith(b"drwx")
    assert by_name[b"link-dir"].startswith(b"d")  # a symlink shows its target
    assert by_name[b"plain.txt"].startswith(b"-rw-r----- ")
    assert b" 5 " in by_name[b"link-in"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("cap", [0, 1, 10, 30, 31, 32])
def test_cap_and_truncation(tree: tuple[LocalStorage, Path], fmt: str, cap: int) -> None:
    storage, _ = tree
    fast, generic = asyncio.run(both(storage, "/folder", fmt, cap))
    assert fast == generic
    assert fast.count == min(cap, 31)
    assert fast.truncated == (cap < 31)


def test_errors_match(tree: tuple[LocalStorage, Path]) -> None:
    storage, _ = tree
    for path, error in [("/missing", NotFound), ("/folder/plain.txt", NotADirectory)]:
        for cap in (None, 0):
            with pytest.raises(error):
                asyncio.run(both(storage, path, "LIST", cap))


@pytest.mark.parametrize("fmt", FORMATS)
def test_mounted_fast_path_equals_fallback(
    tree: tuple[LocalStorage, Path], tmp_path: Path, fmt: str
) -> None:
    storage, _ = tree
    shared_root = tmp_path / "shared"
    (shared_root / "inner").mkdir(parents=True)
    (shared_root / "inner" / "doc.txt").write_bytes(b"doc")
    shared = LocalStorage(shared_root)
    memory = MemoryStorage()
    mounts = [
        Mount("/folder/mnt", shared),  # a mount point inside the listed folder
        Mount("/folder/plain.txt", memory),  # a mount hiding a file of the base
        Mount("/folder/deep/er", memory),  # a folder that only leads to a mount
        Mount("/elsewhere", shared),
    ]
    tree_storage = MountedStorage(storage, mounts)

    async def body() -> None:
        for path in ("/folder", "/folder/mnt", "/folder/mnt/inner", "/folder/deep", "/"):
            for cap in (None, 3):
                fast, generic = await both(tree_storage, path, fmt, cap)
                assert fast == generic, (path, cap)
        nlst = (await tree_storage.list_rendered("/folder", renderer("NLST"))).payload
        names = nlst.split(b"\r\n")
        assert b"mnt" in names and b"deep" in names and names.count(b"plain.txt") == 1
        listed = await tree_storage.list("/folder/mnt")
        mlsd = (await tree_storage.list_rendered("/folder/mnt", renderer("MLSD"))).payload
        # Entries of a mounted storage carry its namespace in ``unique``.
        assert all(f"unique={e.unique};".encode() in mlsd for e in listed)
        assert all(e.unique and e.unique.startswith("v") for e in listed)
        await shared.close()

    asyncio.run(body())


@pytest.mark.parametrize("fmt", FORMATS)
def test_memory_backend_uses_the_fallback(fmt: str) -> None:
    storage = MemoryStorage()

    async def body() -> None:
        await storage.mkdir("/d")
        await storage.mkdir("/d/sub")
        for name in ("b", "a", "caf\udce9"):
            upload = await storage.open_write(f"/d/{name}")
            await upload.write(b"12")
            await upload.commit()
        fast, generic = await both(storage, "/d", fmt, 2)
        assert fast == generic and fast.truncated and fast.count == 2

    asyncio.run(body())
