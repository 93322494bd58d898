"""The local backend's appends in place, journals, partials and sweep, on a real disk.

The end-to-end view (clients, crashes, quotas) is in tests/hostile/test_uploads.py;
here each mechanism is checked at the storage boundary, file by file.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

import pytest

from fileferry.errors import InvalidOffset
from fileferry.storage.local import TEMP_PREFIX, LocalStorage
from fileferry.storage.localappend import FileBusy, marker_for
from fileferry.storage.localsweep import sweep_tree

PREFIX = os.fsencode(TEMP_PREFIX)


def hidden(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_append_in_place_commit_abort_and_busy(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123")

    async def go() -> None:
        storage = LocalStorage(tmp_path)
        try:
            up = await storage.open_write("/f", append=True)
            assert up.in_place_base == 4 and up.size == 4
            with pytest.raises(FileBusy):
                await storage.open_write("/f", 4)  # REST <size> + STOR: the same file
            await up.write(b"abc")
            info = await up.commit()
            assert info.size == 7 and (tmp_path / "f").read_bytes() == b"0123abc"
            up = await storage.open_write("/f", 7)
            await up.write(b"lost")
            await up.abort()
            assert (tmp_path / "f").read_bytes() == b"0123abc"
            with pytest.raises(InvalidOffset):
                await storage.open_write("/f", 8)
            up = await storage.open_write("/f", 2)  # below the end: a copy
            assert up.in_place_base is None and up.pending_copy == 2
            await up.write(b"Z")
            await up.commit()
            assert (tmp_path / "f").read_bytes() == b"01Z"
        finally:
            await storage.close()

    run(go())
    assert not hidden(tmp_path)


def test_a_dead_appenders_journal_is_rolled_back_by_the_next_one(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"base")
    st = target.stat()
    # What a process killed mid-append leaves: its bytes, and its journal.
    marker = marker_for(os.fsencode(tmp_path), b"f", PREFIX)
    Path(os.fsdecode(marker)).write_bytes(b"%d %d 4\nf" % (st.st_dev, st.st_ino))
    with target.open("ab") as fh:
        fh.write(b"half-sent")

    async def go() -> None:
        storage = LocalStorage(tmp_path)
        try:
            up = await storage.open_write("/f", append=True)
            assert up.in_place_base == 4
            await up.write(b"+new")
            await up.commit()
        finally:
            await storage.close()

    run(go())
    assert target.read_bytes() == b"base+new"
    assert not hidden(tmp_path)


def test_the_sweep_spares_locked_files_and_honours_ages(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    dead = tmp_path / "d" / f"{TEMP_PREFIX}dead"
    live = tmp_path / f"{TEMP_PREFIX}live"
    partial = tmp_path / f"{TEMP_PREFIX}partial-0123"
    for p in (dead, live, partial):
        p.write_bytes(b"x" * 10)
    with live.open("rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        swept = sweep_tree(
            os.fsencode(tmp_path), PREFIX, temp_max_age=0, partial_max_age=3600, keep_partial=True
        )
        assert (swept.removed, swept.bytes) == (1, 10)
        assert not dead.exists() and live.exists() and partial.exists()
        swept = sweep_tree(
            os.fsencode(tmp_path), PREFIX, temp_max_age=0, partial_max_age=0, keep_partial=True
        )
        assert swept.removed == 1 and not partial.exists() and live.exists()
    sweep_tree(os.fsencode(tmp_path), PREFIX, temp_max_age=0, partial_max_age=0, keep_partial=True)
    assert not live.exists()


def test_partials_stop_start_over_continue_and_commit(tmp_path: Path) -> None:
    async def go() -> None:
        storage = LocalStorage(tmp_path, resumable_uploads=True)
        try:
            assert await storage.resume_offset("/f") is None
            up = await storage.open_write("/f")
            await up.write(b"hello ")
            await up.abort()
            assert up.abort_change == 6
            assert not (tmp_path / "f").exists()
            assert await storage.resume_offset("/f") == 6
            assert await storage.kept_bytes("/") == 6
            with pytest.raises(InvalidOffset):  # not the partial's size: the target's rules
                await storage.open_write("/f", 5)
            up = await storage.open_write("/f", 6)  # REST 6 + STOR continues it
            assert up.charged_before == 6 and up.size == 6
            await up.write(b"world")
            info = await up.commit()
            assert info.size == 11 and (tmp_path / "f").read_bytes() == b"hello world"
            assert await storage.resume_offset("/f") is None
            up = await storage.open_write("/f")  # a new STOR: a new partial
            await up.write(b"again")
            await up.abort()
            up = await storage.open_write("/f")  # ... started over by the next STOR
            assert up.charged_before == 5 and up.size == 0
            await up.abort()
            assert up.abort_change == -5
            assert (tmp_path / "f").read_bytes() == b"hello world"
        finally:
            await storage.close()

    run(go())
