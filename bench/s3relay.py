"""obstore relayed to FTP clients: the least work any FTP server on an object store does.

``bench/s3.py`` compares fileferry over S3 with obstore reading the same
objects alone. That ceiling only counts the bytes obstore hands over; a
server must also write every one of them into a data socket, and on the
benchmark's one machine an FTP client must read them back out. On 2 cores
those two steps cost as much CPU as obstore itself, so "obstore alone" is a
ceiling no server can approach (the figures are in ``docs/storage.md``).

This responder is the other ceiling: the trivial FTP responder of
``bench/responder.py`` (no paths, permissions, accounting or logging) whose
RETR is one GET streamed by obstore straight into the data socket, driven
by the same load generator as fileferry. What fileferry spends beyond it is
what fileferry itself costs. LIST is the responder's own (it invents a listing).

STOR PATH is the upload ceiling: the data connection is received straight
into part-sized buffers (no intermediate buffer, no copy in Python; reused
as fileferry's are) and the parts are handed to obstore's multipart writer
with fileferry's part size, parts in flight and per-store gate
(``fileferry.storage.s3parts``); a file of
one part or less is one PUT. Nothing else: no SHA-256, no metadata, no tag,
no accounting. ``--sha256`` adds the SHA-256 of every part, in a thread pool
as fileferry does, so the hash's share of fileferry's cost shows apart.

    AWS_... python bench/s3relay.py BUCKET[/PREFIX] [--port 0] [--sha256]   # prints "ready PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import hashlib
import socket
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from responder import Responder, serve

#: obstore's smallest block, as in the "obstore alone" runs of ``bench/s3.py``.
BLOCK = 1 << 20


class S3Relay(Responder):
    """RETR PATH streams the object PREFIX/PATH from the store into the data socket."""

    def __init__(
        self, store: Any, prefix: str, block: int = BLOCK, *, sha256: bool = False
    ) -> None:
        from fileferry.storage.s3io import HASH_THREADS
        from fileferry.storage.s3parts import UploadGate

        super().__init__("/nonexistent", memfd=False)
        self.store = store
        self.prefix = prefix.strip("/")
        self.block = block
        self.gate = UploadGate()
        self.hashers = (
            concurrent.futures.ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="relay-sha")
            if sha256
            else None
        )

    def key(self, path: str) -> str:
        return f"{self.prefix}/{path.lstrip('/')}" if self.prefix else path.lstrip("/")

    async def retr(self, data: socket.socket, path: str) -> None:
        import obstore

        key = self.key(path)
        loop = asyncio.get_running_loop()
        data.setblocking(False)
        try:
            result = await obstore.get_async(self.store, key)
            async for block in result.stream(min_chunk_size=self.block):
                await loop.sock_sendall(data, block)
        except Exception as exc:  # the store failed: end the session, the client counts it
            raise ConnectionError(f"GET {key}: {exc}") from None

    async def stor(self, data: socket.socket, path: str) -> None:
        import obstore

        from fileferry.storage.s3io import PART_CONCURRENCY
        from fileferry.storage.s3parts import PART_SIZE, give_back, lend, take_buffer

        key = self.key(path)
        loop = asyncio.get_running_loop()
        data.setblocking(False)
        sha = hashlib.sha256() if self.hashers is not None else None

        async def part() -> tuple[bytearray, int]:
            """The next part, received in place: full, or shorter at the end of the upload."""
            buf = take_buffer()
            view = memoryview(buf)
            got = 0
            while got < PART_SIZE and (n := await loop.sock_recv_into(data, view[got:])):
                got += n
            if sha is not None and got:
                await loop.run_in_executor(self.hashers, sha.update, view[:got])
            return buf, got

        first, size = await part()
        try:
            if size < PART_SIZE:  # one part or less: one PUT, as fileferry does
                body = lend(first, size, reuse=True)
                await obstore.put_async(self.store, key, body, use_multipart=False)
                return

            async def parts() -> Any:
                buf, got = first, size
                while got:
                    release = await self.gate.enter()  # a place per part, as fileferry's
                    yield lend(buf, got, reuse=True, release=release)
                    if got < PART_SIZE:
                        return
                    buf, got = await part()
                give_back(buf)

            await obstore.put_async(
                self.store,
                key,
                parts(),
                chunk_size=PART_SIZE,
                max_concurrency=PART_CONCURRENCY,
            )
        except Exception as exc:  # the store failed: end the session, the client counts it
            raise ConnectionError(f"PUT {key}: {exc}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("location", help="BUCKET[/PREFIX]; the store from the AWS_* variables")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--block", type=int, default=BLOCK, help="obstore's min_chunk_size")
    parser.add_argument("--sha256", action="store_true", help="STOR hashes every part")
    args = parser.parse_args()
    from fileferry.backends.s3 import S3Settings

    bucket, _, prefix = args.location.partition("/")
    # The store fileferry would build from the same environment: same client options.
    relay = S3Relay(S3Settings(None).store(bucket), prefix, args.block, sha256=args.sha256)
    try:
        import uvloop

        uvloop.run(serve(relay, args.port))
    except ImportError:
        asyncio.run(serve(relay, args.port))


if __name__ == "__main__":
    main()
