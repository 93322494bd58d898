"""A trivial in-memory FTP responder: the ceiling the load generator can reach.

It speaks just enough FTP for the benchmark scenarios (USER, PASS, TYPE,
EPSV, PASV, RETR, STOR, LIST, QUIT) and does the least work a server could:
RETR sends the requested file's size worth of bytes from a memfd with
``os.sendfile`` (zero copies, no disk), STOR drops whatever arrives into one
reused buffer, LIST sends a listing built once at start. No permissions, no
paths, no logging. When fileferry runs the same scenarios at a good fraction
of this responder's numbers, the load generator is not what limits them; the
driver reports these numbers as the "ceiling" column.

    python bench/responder.py ROOT [--port 0]   # prints "ready PORT"

Sizes of RETR files and LIST contents come from the real files under ROOT, so
the responder answers the same paths as the servers it stands beside.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import stat
import sys

RECV_BUFFER = 4 * 1024 * 1024
#: As large as the biggest benchmark file, and every page written: the ceiling
#: must read distinct page-cache pages, as a server sending a real 512 MiB file
#: does. (It used to send the first pages of a mostly sparse 64 MiB memfd over
#: and over, from offset 0: one cache-hot page set, which flattered the ceiling.)
_MEMFD_SIZE = 512 * 1024 * 1024


class Responder:
    def __init__(self, root: str, *, memfd: bool = True) -> None:
        """``memfd=False``: a subclass that sends other bytes skips the 512 MiB of pages."""
        self.root = root
        self.memfd = -1
        if memfd:  # filled before the ready line: never inside a measured run
            self.memfd = os.memfd_create("responder")
            os.ftruncate(self.memfd, _MEMFD_SIZE)
            pattern = b"\x5a" * (1 << 20)
            for offset in range(0, _MEMFD_SIZE, len(pattern)):
                os.pwrite(self.memfd, pattern, offset)
        self.buf = memoryview(bytearray(RECV_BUFFER))
        self.listings: dict[str, bytes] = {}

    def listing(self, path: str) -> bytes:
        cached = self.listings.get(path)
        if cached is None:
            lines = []
            for entry in os.scandir(os.path.join(self.root, path.lstrip("/"))):
                st = entry.stat()
                kind = "d" if stat.S_ISDIR(st.st_mode) else "-"
                size = f"{st.st_size:>12}"
                lines.append(f"{kind}rw-r--r-- 1 ftp ftp {size} Jan 01 00:00 {entry.name}")
            cached = ("\r\n".join(lines) + "\r\n").encode()
            self.listings[path] = cached
        return cached

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener: socket.socket | None = None
        writer.write(b"220 responder\r\n")
        try:
            while line := await reader.readline():
                verb, _, arg = line.decode().strip().partition(" ")
                verb = verb.upper()
                if verb == "USER":
                    writer.write(b"331 ok\r\n")
                elif verb == "PASS":
                    writer.write(b"230 ok\r\n")
                elif verb in ("TYPE", "PBSZ", "PROT"):
                    writer.write(b"200 ok\r\n")
                elif verb in ("EPSV", "PASV"):
                    if listener is not None:
                        listener.close()
                    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    listener.bind(("127.0.0.1", 0))
                    listener.listen(1)
                    listener.setblocking(False)
                    port = listener.getsockname()[1]
                    if verb == "EPSV":
                        writer.write(f"229 ok (|||{port}|)\r\n".encode())
                    else:
                        writer.write(f"227 ok (127,0,0,1,{port >> 8},{port & 255})\r\n".encode())
                elif verb in ("RETR", "STOR", "LIST") and listener is not None:
                    writer.write(b"150 ok\r\n")
                    data, _ = await loop.sock_accept(listener)
                    listener.close()
                    listener = None
                    try:
                        if verb == "RETR":
                            await self.retr(data, arg)
                        elif verb == "LIST":
                            await loop.sock_sendall(data, self.listing(arg or "/"))
                        else:
                            await self.stor(data, arg)
                    finally:
                        data.close()
                    writer.write(b"226 ok\r\n")
                elif verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"502 no\r\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if listener is not None:
                listener.close()
            writer.close()

    async def retr(self, data: socket.socket, path: str) -> None:
        """Send as many bytes as the file ``path`` under the root has."""
        await self.send(data, os.stat(os.path.join(self.root, path.lstrip("/"))).st_size)

    async def stor(self, data: socket.socket, path: str) -> None:
        """Drop whatever arrives into one reused buffer."""
        loop = asyncio.get_running_loop()
        while await loop.sock_recv_into(data, self.buf):
            pass

    async def send(self, data: socket.socket, size: int) -> None:
        """``size`` bytes from the memfd with sendfile, waiting when the socket is full."""
        loop = asyncio.get_running_loop()
        data.setblocking(False)
        sent = 0
        while sent < size:
            try:
                offset = sent % _MEMFD_SIZE
                count = min(size - sent, _MEMFD_SIZE - offset)
                sent += os.sendfile(data.fileno(), self.memfd, offset, count)
            except BlockingIOError:
                fut = loop.create_future()
                loop.add_writer(data.fileno(), fut.set_result, None)
                try:
                    await fut
                finally:
                    loop.remove_writer(data.fileno())


async def main(args: argparse.Namespace) -> None:
    await serve(Responder(args.root), args.port)


async def serve(responder: Responder, port: int) -> None:
    """Answer on ``port`` (0: any), print ``ready PORT``, stop on SIGINT or SIGTERM."""
    server = await asyncio.start_server(
        responder.session, "127.0.0.1", port, backlog=4096, limit=2**16
    )
    port = server.sockets[0].getsockname()[1]
    print(f"ready {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--port", type=int, default=0)
    try:
        import uvloop

        uvloop.run(main(parser.parse_args()))
    except ImportError:
        asyncio.run(main(parser.parse_args()))
    sys.exit(0)
