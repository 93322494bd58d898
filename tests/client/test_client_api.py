"""The Python API against a real fileferry server: transfers, resume, segments, verification."""

from __future__ import annotations

import asyncio
import ftplib
import io
import json
import os
from pathlib import Path

import pytest
from clientkit import Server, sha256

import fileferry
from fileferry.client import Kind, RemoteError, VerificationFailed
from fileferry.client.transfer import PART_SUFFIX, SEGMENTS_SUFFIX

BIG = os.urandom(3 * 1024 * 1024 + 12345)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """Local files of a test, apart from the server root and HOME under tmp_path."""
    d = tmp_path / "out"
    d.mkdir()
    return d


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def _connect(server: Server, **kw):
    return fileferry.connect(server.url + "/", password=server.password, **kw)


def test_connect_is_exported_lazily():
    from fileferry.client.api import connect

    assert fileferry.connect is connect


def test_round_trip_list_walk_stat_hash(ffserver: Server, out: Path):
    src = out / "big.bin"
    src.write_bytes(BIG)

    async def go():
        async with _connect(ffserver) as ftp:
            await ftp.mkdir("a/b/c", parents=True)
            await ftp.mkdir("a/b", parents=True)  # exists: fine with parents
            up = await ftp.upload(src, "a/b/big.bin")
            assert (up.size, up.transferred, up.verified_by) == (len(BIG), len(BIG), "SHA-256")
            down = await ftp.download("a/b/big.bin", out / "copy.bin")
            assert down.verified_by == "SHA-256"
            entries = await ftp.list("a/b")
            assert [(e.name, e.kind, e.size) for e in entries] == [
                ("big.bin", Kind.FILE, len(BIG)),
                ("c", Kind.DIR, entries[1].size),
            ]
            walked = [
                (d, [x.name for x in ds], [f.name for f in fs]) async for d, ds, fs in ftp.walk()
            ]
            assert walked == [
                ("", ["a"], []),
                ("a", ["b"], []),
                ("a/b", ["c"], ["big.bin"]),
                ("a/b/c", [], []),
            ]
            info = await ftp.stat("a/b/big.bin")
            assert info.is_file and info.size == len(BIG)
            digest = await ftp.hash("a/b/big.bin")
            assert (digest.algorithm, digest.hexdigest) == ("SHA-256", sha256(src))
            md5 = await ftp.hash("a/b/big.bin", "MD5")
            assert md5.algorithm == "MD5"
            await ftp.rename("a/b/big.bin", "a/moved.bin")
            assert not await ftp.exists("a/b/big.bin")
            await ftp.remove("a", recursive=True)
            assert await ftp.list() == []

    run(go())
    assert sha256(out / "copy.bin") == sha256(src)
    assert not list(ffserver.root.iterdir())


def test_missing_file_is_a_remote_error(ffserver: Server, out: Path):
    async def go():
        async with _connect(ffserver) as ftp:
            with pytest.raises(RemoteError) as info:
                await ftp.download("nope.bin", out / "x")
            assert info.value.code == 550 and info.value.exit_code == 5

    run(go())
    assert not (out / "x").exists()
    assert not (out / ("x" + PART_SUFFIX)).exists()


@pytest.mark.parametrize("segments", [2, 4, 7])
def test_segmented_download(ffserver: Server, out: Path, segments: int):
    (ffserver.root / "big.bin").write_bytes(BIG)

    async def go():
        async with _connect(ffserver) as ftp:
            result = await ftp.download("big.bin", out, segments=segments)
            # Each range had a connection of its own, all kept for reuse.
            assert len(ftp.pool._all) == segments
            return result

    result = run(go())
    assert result.verified_by == "SHA-256"
    assert sha256(out / "big.bin") == sha256(ffserver.root / "big.bin")
    assert [p.name for p in out.iterdir()] == ["big.bin"]


def test_single_stream_resume_continues_a_part_file(ffserver: Server, out: Path):
    (ffserver.root / "big.bin").write_bytes(BIG)
    (out / ("big.bin" + PART_SUFFIX)).write_bytes(BIG[:1_000_000])

    async def go():
        async with _connect(ffserver) as ftp:
            return await ftp.download("big.bin", out / "big.bin")

    result = run(go())
    assert (result.resumed_from, result.transferred) == (1_000_000, len(BIG) - 1_000_000)
    assert sha256(out / "big.bin") == sha256(ffserver.root / "big.bin")


def test_resume_onto_a_wrong_part_starts_over(ffserver: Server, out: Path):
    (ffserver.root / "big.bin").write_bytes(BIG)
    (out / ("big.bin" + PART_SUFFIX)).write_bytes(b"\0" * 500_000)  # not BIG's start

    async def go():
        async with _connect(ffserver) as ftp:
            return await ftp.download("big.bin", out / "big.bin")

    result = run(go())
    assert (result.resumed_from, result.transferred) == (0, len(BIG))
    assert sha256(out / "big.bin") == sha256(ffserver.root / "big.bin")


def test_segmented_resume_uses_the_record(ffserver: Server, out: Path):
    (ffserver.root / "big.bin").write_bytes(BIG)
    size = len(BIG)
    half = size // 2
    part = out / ("big.bin" + PART_SUFFIX)
    # An interrupted 2-range download: the first range got 400 kB, the second 1 MB.
    data = bytearray(size)
    data[0:400_000] = BIG[0:400_000]
    data[half : half + 1_000_000] = BIG[half : half + 1_000_000]
    part.write_bytes(bytes(data))
    record = {"size": size, "ranges": [[0, 400_000, half], [half, half + 1_000_000, size]]}
    Path(str(part) + SEGMENTS_SUFFIX).write_text(json.dumps(record))

    async def go():
        async with _connect(ffserver) as ftp:
            return await ftp.download("big.bin", out / "big.bin", segments=2)

    result = run(go())
    assert result.resumed_from == 1_400_000
    assert result.transferred == size - 1_400_000
    assert sha256(out / "big.bin") == sha256(ffserver.root / "big.bin")
    assert [p.name for p in out.iterdir()] == ["big.bin"]


def test_file_changed_on_the_server_during_download_fails_verification(ffserver: Server, out: Path):
    remote = ffserver.root / "moving.bin"
    remote.write_bytes(BIG)

    class ChangeAtTheEnd:
        """After the last byte arrived, someone rewrites the file on the server."""

        def start(self, total, done):
            self.left = total - done

        def advance(self, n):
            self.left -= n
            if self.left == 0:
                remote.write_bytes(BIG[::-1])

    async def go():
        async with _connect(ffserver) as ftp:
            await ftp.download("moving.bin", out / "moving.bin", progress=ChangeAtTheEnd())

    with pytest.raises(VerificationFailed) as info:
        run(go())
    assert info.value.exit_code == 7
    assert "SHA-256 differs" in str(info.value)
    assert list(out.iterdir()) == []  # no half-trusted file left behind


def test_upload_resumes_only_a_proven_prefix(ffserver: Server, out: Path):
    src = out / "up.bin"
    src.write_bytes(BIG)
    host, port = ffserver.url.rsplit("@", 1)[1].split(":")
    f = ftplib.FTP(timeout=30)
    f.connect(host, int(port))
    f.login("alice", "secret")
    f.storbinary("STOR good.bin", io.BytesIO(BIG[:700_000]))
    f.storbinary("STOR bad.bin", io.BytesIO(b"x" * 700_000))
    f.quit()

    async def go():
        async with _connect(ffserver) as ftp:
            good = await ftp.upload(src, "good.bin")
            bad = await ftp.upload(src, "bad.bin")
            forced = await ftp.upload(src, "bad2.bin", resume=True)  # nothing there: from 0
            return good, bad, forced

    good, bad, forced = run(go())
    assert (good.resumed_from, good.transferred) == (700_000, len(BIG) - 700_000)
    assert (bad.resumed_from, bad.transferred) == (0, len(BIG))
    assert forced.resumed_from == 0
    for name in ("good.bin", "bad.bin", "bad2.bin"):
        assert sha256(ffserver.root / name) == sha256(src)


def test_forced_resume_onto_a_wrong_prefix_is_repaired(ffserver: Server, out: Path):
    src = out / "up.bin"
    src.write_bytes(BIG)
    (ffserver.root / "wrong.bin").write_bytes(b"y" * 100_000)

    async def go():
        async with _connect(ffserver) as ftp:
            return await ftp.upload(src, "wrong.bin", resume=True)

    result = run(go())
    # The appended copy failed its SHA-256 check, so it was sent again whole.
    assert (result.resumed_from, result.transferred, result.verified_by) == (0, len(BIG), "SHA-256")
    assert sha256(ffserver.root / "wrong.bin") == sha256(src)


def test_active_mode(ffserver: Server, out: Path):
    src = out / "a.bin"
    src.write_bytes(BIG[:300_000])

    async def go():
        async with _connect(ffserver, active=True) as ftp:
            await ftp.upload(src, "a.bin")
            await ftp.download("a.bin", out / "b.bin")
            return [e.name for e in await ftp.list()]

    assert run(go()) == ["a.bin"]
    assert sha256(out / "b.bin") == sha256(src)


def test_parallel_uploads_share_a_pool(ffserver: Server, out: Path):
    files = []
    for i in range(12):
        p = out / f"f{i}.bin"
        p.write_bytes(os.urandom(50_000 + i))
        files.append(p)

    async def go():
        async with _connect(ffserver) as ftp:
            results = await asyncio.gather(*(ftp.upload(p, p.name) for p in files))
            return results, len(ftp.pool._all)

    results, connections = run(go())
    assert connections == len(files)
    assert all(r.verified_by == "SHA-256" for r in results)
    for p in files:
        assert sha256(ffserver.root / p.name) == sha256(p)


def test_download_into_a_special_file(ffserver: Server, out: Path):
    (ffserver.root / "x.bin").write_bytes(BIG[:100_000])

    async def go():
        async with _connect(ffserver) as ftp:
            return await ftp.download("x.bin", "/dev/null")

    result = run(go())
    assert (result.size, result.verified_by) == (100_000, "SHA-256")
