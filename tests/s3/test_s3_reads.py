"""How the S3 reader hands a GET body to the data path: whole blocks, never cut.

The data path (and HASH) asks ``read`` for 1 MiB at a time. A block from
obstore bigger than that would be cut, and the piece handed on copied: every
byte copied once more and sent in two pieces. These tests read real objects
from the session's SeaweedFS through the backend, as a RETR does.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from typing import Any

import pytest
from seaweed import wait_released

from fileferry.server.datapath.run import READ_CHUNK as ASKED
from fileferry.server.handlers.hashing import CHUNK as HASH_ASKED
from fileferry.storage.s3io import READ_BLOCK, READ_SIZE


def sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


async def _with_storage(seaweed: Any, body: Any) -> None:
    from fileferry.backends.s3 import S3Locations

    locations = S3Locations(None)
    try:
        await body(locations.storage(f"s3://{seaweed.bucket}/reads-{uuid.uuid4().hex[:10]}"))
    finally:
        await locations.close()
        await asyncio.to_thread(wait_released, seaweed.ports["s3"])


def test_blocks_are_sized_for_what_the_server_asks() -> None:
    assert READ_SIZE == ASKED == HASH_ASKED
    assert 256 << 10 <= READ_BLOCK < READ_SIZE


def test_a_download_gets_whole_blocks_of_the_object(
    seaweed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    data = random.Random(14).randbytes(9 * ASKED + 12345)

    async def body(storage: Any) -> None:
        upload = await storage.open_write("/blocks.bin")
        await upload.write(data)
        await upload.commit()

        sizes: list[int] = []
        got = bytearray()
        async with await storage.open_read("/blocks.bin") as reader:
            while chunk := await reader.read(ASKED):
                assert type(chunk) is bytes
                sizes.append(len(chunk))
                got += chunk
        assert sha(got) == sha(data)
        assert max(sizes) <= ASKED, sizes
        # Every block but the last is at least READ_BLOCK: none is a piece cut off another.
        assert min(sizes[:-1]) >= READ_BLOCK, sizes
        assert len(sizes) <= len(data) // READ_BLOCK + 1, sizes

        # Smaller reads from an offset (HASH of a range, a throttled RETR) are still cut exactly.
        pieces: list[bytes] = []
        async with await storage.open_read("/blocks.bin", 777_777) as reader:
            while chunk := await reader.read(100_000):
                assert 0 < len(chunk) <= 100_000
                pieces.append(chunk)
        assert sha(b"".join(pieces)) == sha(data[777_777:])

    asyncio.run(_with_storage(seaweed, body))
