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
what fileferry itself costs. Only RETR reads the store; STOR and LIST are
the responder's own (they drop and invent bytes).

    AWS_... python bench/s3relay.py BUCKET[/PREFIX] [--port 0]   # prints "ready PORT"
"""

from __future__ import annotations

import argparse
import asyncio
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

    def __init__(self, store: Any, prefix: str, block: int = BLOCK) -> None:
        super().__init__("/nonexistent", memfd=False)
        self.store = store
        self.prefix = prefix.strip("/")
        self.block = block

    async def retr(self, data: socket.socket, path: str) -> None:
        import obstore

        key = f"{self.prefix}/{path.lstrip('/')}" if self.prefix else path.lstrip("/")
        loop = asyncio.get_running_loop()
        data.setblocking(False)
        try:
            result = await obstore.get_async(self.store, key)
            async for block in result.stream(min_chunk_size=self.block):
                await loop.sock_sendall(data, block)
        except Exception as exc:  # the store failed: end the session, the client counts it
            raise ConnectionError(f"GET {key}: {exc}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("location", help="BUCKET[/PREFIX]; the store from the AWS_* variables")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--block", type=int, default=BLOCK, help="obstore's min_chunk_size")
    args = parser.parse_args()
    from fileferry.backends.s3 import S3Settings

    bucket, _, prefix = args.location.partition("/")
    # The store fileferry would build from the same environment: same client options.
    relay = S3Relay(S3Settings(None).store(bucket), prefix, args.block)
    try:
        import uvloop

        uvloop.run(serve(relay, args.port))
    except ImportError:
        asyncio.run(serve(relay, args.port))


if __name__ == "__main__":
    main()
