"""Where local metadata calls run: the mount-type decision and the slow-call fallback."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fileferry.storage import fscalls
from fileferry.storage.local import LocalStorage

MOUNTINFO = """\
22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
30 22 0:26 / /proc rw,nosuid - proc proc rw
41 22 0:40 / /srv/share rw,relatime - nfs4 server:/export rw,vers=4.2
42 41 0:41 / /srv/share/local rw - tmpfs tmpfs rw
43 22 0:42 / /mnt/with\\040space rw - fuse.sshfs host: rw
44 22 0:43 / /srv/sharetwo rw - xfs /dev/vdb rw
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/home/user/files", "ext4"),
        ("/", "ext4"),
        ("/srv/share", "nfs4"),
        ("/srv/share/uploads", "nfs4"),
        ("/srv/share/local/x", "tmpfs"),  # the deepest mount wins
        ("/srv/sharetwo/x", "xfs"),  # a prefix of the name is not a parent
        ("/mnt/with space/x", "fuse.sshfs"),  # octal escapes in mountinfo
    ],
)
def test_mount_type_picks_the_deepest_mount(path: str, expected: str) -> None:
    assert fscalls.mount_type(path, MOUNTINFO) == expected


def test_remote_and_userspace_file_systems_are_pooled() -> None:
    assert fscalls.is_remote("nfs4")
    assert fscalls.is_remote("cifs")
    assert fscalls.is_remote("fuse.sshfs")
    assert not fscalls.is_remote("ext4")
    assert not fscalls.is_remote("tmpfs")
    assert not fscalls.is_remote(None)


def test_policy_overrides_the_mount_type(tmp_path: Path) -> None:
    root = os.fsencode(tmp_path)
    assert fscalls.inline_for(root, "inline") is True
    assert fscalls.inline_for(root, "thread") is False
    expected = not fscalls.is_remote(fscalls.mount_type(str(tmp_path)))
    assert fscalls.inline_for(root, "auto") is expected


def test_a_slow_inline_call_moves_the_next_ones_to_the_pool() -> None:
    # The storage asks ``inline`` before each short call and runs it with
    # ``call`` on its own thread, or in the pool when ``inline`` says no.
    pool = ThreadPoolExecutor(max_workers=1)
    calls = fscalls.Calls(pool, inline=True, where="/test")
    try:
        assert calls.inline
        assert calls.call(lambda: threading.current_thread().name) == threading.main_thread().name
        calls.call(time.sleep, fscalls.SLOW_CALL + 0.02)
        assert not calls.inline  # the next minute's calls go to the pool
        calls._pooled_until = time.monotonic() - 1  # the pause is over
        assert calls.inline
    finally:
        pool.shutdown()


def test_thread_policy_never_runs_on_the_loop_thread(tmp_path: Path) -> None:
    """With ``thread``, even a stat happens in a pool thread (a hung NFS stalls one worker)."""
    seen: list[str] = []
    real_stat = LocalStorage._stat_sync

    def spy(self: LocalStorage, host: bytes) -> os.stat_result:
        seen.append(threading.current_thread().name)
        return real_stat(self, host)

    (tmp_path / "f").write_bytes(b"x")

    async def main(policy: str) -> None:
        storage = LocalStorage(tmp_path, fs_calls=policy)
        try:
            info = await storage.stat("/f")
            assert info.size == 1
        finally:
            await storage.close()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LocalStorage, "_stat_sync", spy)
        asyncio.run(main("thread"))
        asyncio.run(main("inline"))
    assert seen[0] != threading.main_thread().name
    assert seen[1] == threading.main_thread().name


def test_failed_inline_open_maps_errors_like_the_pool(tmp_path: Path) -> None:
    from fileferry.errors import NotFound

    async def main(policy: str) -> None:
        storage = LocalStorage(tmp_path, fs_calls=policy)
        try:
            with pytest.raises(NotFound):
                await storage.open_read("/missing")
            with pytest.raises(NotFound):
                await storage.open_write("/no/such/dir/file")
        finally:
            await storage.close()

    asyncio.run(main("inline"))
    asyncio.run(main("thread"))
    assert os.listdir(tmp_path) == []
