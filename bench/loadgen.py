"""The benchmark load generator: a small asyncio FTP client built for speed.

Why our own: ftplib and curl copy every chunk through Python file objects or
spawn a process per transfer, so on a 2-core machine they would measure
themselves rather than the server. This client keeps the control connection
on asyncio streams (small traffic) and moves data on raw non-blocking sockets
with one large, shared, reused buffer: ``sock_recv_into`` for downloads (the
bytes are counted and dropped) and ``sock_sendall`` of one read-only buffer
for uploads. Nothing is allocated per chunk. ``uvloop`` is used when it is
importable (``--no-uvloop`` to compare).

One process runs one scenario and prints one JSON object on stdout::

    python bench/loadgen.py 127.0.0.1 2121 retr big.bin
    python bench/loadgen.py 127.0.0.1 2121 logins --clients 300 --pause

With ``--pause``, ``logins`` prints ``{"event": "logged-in", ...}`` once
every client is logged in and waits for a line on stdin before the QUITs,
so the driver can measure the server's memory with all sessions open.

That this client is not the bottleneck is checked by running the same
scenarios against ``bench/responder.py``, a trivial in-memory FTP responder:
its numbers are the ceiling the driver reports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import ssl
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

#: One receive buffer shared by every download: data is dropped, and each
#: ``recv_into`` completes synchronously inside the loop, so sharing is safe.
RECV_BUFFER = 4 * 1024 * 1024
#: Uploads send this many bytes per ``sock_sendall`` from one shared buffer.
SEND_CHUNK = 1024 * 1024
TIMEOUT = 120.0
#: A connection with no banner after this long is abandoned and made again.
BANNER_TIMEOUT = 5.0
CONNECT_ATTEMPTS = 6


class FTPError(Exception):
    """The server answered with an unexpected reply code."""


class Client:
    """One FTP session: control on asyncio streams, data on raw sockets."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.retries = 0

    async def connect(self) -> None:
        """Connect and read the banner, retrying like a patient client would.

        A server whose accept queue overflows (one that forks per session)
        may drop a connection the client already sees as established; with
        no banner it would wait forever, so it gives up after
        ``BANNER_TIMEOUT`` and connects again. The retries count in the time.
        """
        for attempt in range(CONNECT_ATTEMPTS):
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, limit=2**16
            )
            sock = self.writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                async with asyncio.timeout(BANNER_TIMEOUT):
                    await self.expect(220)
                break
            except TimeoutError:
                self.writer.close()
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise
                self.retries += 1
        if self.tls is not None:
            await self.command("AUTH TLS", 234)
            await self.writer.start_tls(self.tls)
            await self.command("PBSZ 0", 200)
            await self.command("PROT P", 200)

    async def reply(self) -> tuple[int, str]:
        """Read one (possibly multi-line) reply."""
        assert self.reader is not None
        line = await self.reader.readline()
        if not line:
            raise ConnectionError("control connection closed")
        text = line.decode("utf-8", "replace")
        code = text[:3]
        if len(text) > 3 and text[3] == "-":
            while True:
                more = await self.reader.readline()
                if not more:
                    raise ConnectionError("control connection closed")
                if more[:3] == code.encode() and more[3:4] == b" ":
                    break
        return int(code), text[4:].strip()

    async def expect(self, *codes: int) -> str:
        code, text = await self.reply()
        if code not in codes:
            raise FTPError(f"expected {codes}, got {code} {text}")
        return text

    async def command(self, line: str, *codes: int) -> str:
        assert self.writer is not None
        self.writer.write(line.encode() + b"\r\n")
        return await self.expect(*codes)

    async def login(self, user: str, password: str) -> None:
        code, text = await self._send_reply(f"USER {user}")
        if code == 331:
            code, text = await self._send_reply(f"PASS {password}")
        if code != 230:
            raise FTPError(f"login failed: {code} {text}")
        await self.command("TYPE I", 200)

    async def _send_reply(self, line: str) -> tuple[int, str]:
        assert self.writer is not None
        self.writer.write(line.encode() + b"\r\n")
        return await self.reply()

    async def open_data(self) -> socket.socket:
        """EPSV and connect; the transfer command is sent after the connect."""
        text = await self.command("EPSV", 229)
        port = int(text.split("|")[-2])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (self.host, port))
        return sock

    async def retr(self, path: str, buf: memoryview) -> int:
        """Download ``path``, dropping the bytes; returns the byte count."""
        sock = await self.open_data()
        loop = asyncio.get_running_loop()
        try:
            await self.command(f"RETR {path}", 150, 125)
            got = 0
            while n := await loop.sock_recv_into(sock, buf):
                got += n
        finally:
            sock.close()
        await self.expect(226, 250)
        return got

    async def stor(self, path: str, size: int, data: memoryview) -> int:
        """Upload ``size`` bytes (``data`` repeated) to ``path``."""
        sock = await self.open_data()
        loop = asyncio.get_running_loop()
        try:
            await self.command(f"STOR {path}", 150, 125)
            left = size
            chunk = len(data)
            while left > 0:
                n = min(left, chunk)
                await loop.sock_sendall(sock, data[:n])
                left -= n
        finally:
            sock.close()
        await self.expect(226, 250)
        return size

    async def listing(self, path: str, buf: memoryview) -> int:
        sock = await self.open_data()
        loop = asyncio.get_running_loop()
        try:
            await self.command(f"LIST {path}", 150, 125)
            got = 0
            while n := await loop.sock_recv_into(sock, buf):
                got += n
        finally:
            sock.close()
        await self.expect(226, 250)
        return got

    async def quit(self) -> None:
        assert self.writer is not None
        try:
            await self.command("QUIT", 221)
            await self.reader.read()  # type: ignore[union-attr]
        finally:
            self.writer.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    # --- TLS data (blocking, in a thread) -------------------------------------
    # asyncio cannot resume a TLS session on a new connection, and servers
    # (rightly) demand that the data connection resumes the control's session;
    # the FTPS rows are single-stream, so a blocking socket in a thread is fine.

    def _tls_session(self) -> ssl.SSLSession | None:
        assert self.writer is not None
        obj = self.writer.get_extra_info("ssl_object")
        return obj.session if obj is not None else None

    async def tls_transfer(self, verb: str, path: str, size: int, data: memoryview) -> int:
        assert self.tls is not None
        text = await self.command("EPSV", 229)
        port = int(text.split("|")[-2])
        raw = socket.create_connection((self.host, port), timeout=TIMEOUT)
        session = self._tls_session()
        assert self.writer is not None
        self.writer.write(f"{verb} {path}\r\n".encode())
        await self.expect(150, 125)
        moved = await asyncio.to_thread(_tls_data, self.tls, raw, session, verb, size, data)
        await self.expect(226, 250)
        return moved


def _tls_data(
    ctx: ssl.SSLContext,
    raw: socket.socket,
    session: ssl.SSLSession | None,
    verb: str,
    size: int,
    data: memoryview,
) -> int:
    with ctx.wrap_socket(raw, server_hostname=None, session=session) as tls:
        if verb == "RETR":
            buf = bytearray(RECV_BUFFER)
            got = 0
            while n := tls.recv_into(buf):
                got += n
            return got
        left = size
        while left > 0:
            n = min(left, len(data))
            tls.sendall(data[:n])
            left -= n
        tls.unwrap()  # close_notify: the server commits only after it
        return size


def client_tls_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # TLS 1.2 sessions are resumable on the data connection with every peer;
    # TLS 1.3 tickets arrive late and some servers do not resume them.
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


# --- scenarios ---------------------------------------------------------------------


class Scenario:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.buf = memoryview(bytearray(RECV_BUFFER))
        pattern = (bytes(range(256)) * (SEND_CHUNK // 256))[:SEND_CHUNK]
        self.data = memoryview(pattern)
        self.tls = client_tls_context() if args.tls else None

    async def session(self) -> Client:
        c = Client(self.args.host, self.args.port, self.tls)
        await c.connect()
        await c.login(self.args.user, self.args.password)
        return c

    async def idle_clients(self) -> list[Client]:
        n = self.args.idle
        if not n:
            return []
        return list(await asyncio.gather(*(self.session() for _ in range(n))))

    async def single(self, verb: str) -> dict[str, Any]:
        idle = await self.idle_clients()
        c = await self.session()
        t0 = time.perf_counter()
        if self.tls is not None:
            moved = await c.tls_transfer(verb, self.args.path, self.args.size, self.data)
        elif verb == "RETR":
            moved = await c.retr(self.args.path, self.buf)
        else:
            moved = await c.stor(self.args.path, self.args.size, self.data)
        secs = time.perf_counter() - t0
        await c.quit()
        await _quit_all(idle)
        return {"secs": secs, "bytes": moved, "mb_s": moved / secs / 1e6}

    async def retr(self) -> dict[str, Any]:
        return await self.single("RETR")

    async def stor(self) -> dict[str, Any]:
        return await self.single("STOR")

    async def logins(self) -> dict[str, Any]:
        n = self.args.clients
        clients = [Client(self.args.host, self.args.port) for _ in range(n)]

        async def one(c: Client) -> None:
            await c.connect()
            await c.login(self.args.user, self.args.password)

        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(c) for c in clients), return_exceptions=True)
        login_s = time.perf_counter() - t0
        failed = [r for r in results if isinstance(r, BaseException)]
        if self.args.pause:
            retries = sum(c.retries for c in clients)
            event = {"event": "logged-in", "secs": login_s, "retries": retries}
            print(json.dumps(event), flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        ok = [c for c, r in zip(clients, results, strict=True) if not isinstance(r, BaseException)]
        t1 = time.perf_counter()
        quits = await asyncio.gather(*(c.quit() for c in ok), return_exceptions=True)
        quit_s = time.perf_counter() - t1
        for c in clients:
            c.close()
        failed += [r for r in quits if isinstance(r, BaseException)]
        retries = sum(c.retries for c in clients)
        return {
            "login_s": login_s,
            "quit_s": quit_s,
            "failed": len(failed),
            "retries": retries,
            **_first(failed),
        }

    async def many(self, work: Callable[[Client, int], Awaitable[int]]) -> dict[str, Any]:
        """Log every client in first, then start all transfers at once (timed)."""
        n = self.args.clients
        clients = list(await asyncio.gather(*(self.session() for _ in range(n))))
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(work(c, i) for i, c in enumerate(clients)), return_exceptions=True
        )
        secs = time.perf_counter() - t0
        failed = [r for r in results if isinstance(r, BaseException)]
        moved = sum(r for r in results if isinstance(r, int))
        await _quit_all(clients)
        return {"secs": secs, "bytes": moved, "failed": len(failed), **_first(failed)}

    async def retr_many(self) -> dict[str, Any]:
        return await self.many(lambda c, i: c.retr(self.args.path, self.buf))

    async def stor_many(self) -> dict[str, Any]:
        size = self.args.size
        return await self.many(lambda c, i: c.stor(f"{self.args.path}/m{i:04d}", size, self.data))

    async def small_stor(self) -> dict[str, Any]:
        c = await self.session()
        data = self.data[: self.args.size]
        t0 = time.perf_counter()
        for i in range(self.args.count):
            await c.stor(f"{self.args.path}/s{i:04d}", self.args.size, data)
        secs = time.perf_counter() - t0
        await c.quit()
        return {"secs": secs, "files_s": self.args.count / secs}

    async def small_retr(self) -> dict[str, Any]:
        c = await self.session()
        t0 = time.perf_counter()
        for i in range(self.args.count):
            await c.retr(f"{self.args.path}/{i:04d}", self.buf)
        secs = time.perf_counter() - t0
        await c.quit()
        return {"secs": secs, "files_s": self.args.count / secs}

    async def list(self) -> dict[str, Any]:
        c = await self.session()
        times = []
        size = 0
        for _ in range(self.args.repeat):
            t0 = time.perf_counter()
            size = await c.listing(self.args.path, self.buf)
            times.append(time.perf_counter() - t0)
        await c.quit()
        return {"secs": statistics.median(times), "bytes": size}


def _first(failed: list[BaseException]) -> dict[str, str]:
    return {"error": f"{type(failed[0]).__name__}: {failed[0]}"} if failed else {}


async def _quit_all(clients: list[Client]) -> None:
    await asyncio.gather(*(c.quit() for c in clients), return_exceptions=True)
    for c in clients:
        c.close()


SCENARIOS = ("retr", "stor", "logins", "retr-many", "stor-many", "small-stor", "small-retr", "list")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument("path", nargs="?", default="", help="file or folder the scenario uses")
    p.add_argument("--user", default="bench")
    p.add_argument("--password", default="bench")
    p.add_argument("--size", type=int, default=512 * 1024 * 1024, help="bytes per upload")
    p.add_argument("--clients", type=int, default=300)
    p.add_argument("--idle", type=int, default=0, help="idle sessions kept open meanwhile")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--pause", action="store_true", help="logins: wait for stdin before QUIT")
    p.add_argument("--tls", action="store_true", help="explicit FTPS with PROT P")
    p.add_argument("--no-uvloop", action="store_true")
    p.add_argument("--timeout", type=float, default=300, help="give up after this many seconds")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    scenario = Scenario(args)
    method = getattr(scenario, args.scenario.replace("-", "_"))
    async with asyncio.timeout(args.timeout):
        result: dict[str, Any] = await method()
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _raise_fd_limit()
    runner: Callable[[Awaitable[dict[str, Any]]], dict[str, Any]] = asyncio.run
    if not args.no_uvloop:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
    try:
        result = runner(run(args))
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


def _raise_fd_limit() -> None:
    """300 sessions with a data connection each need more than 1024 descriptors."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192 <= hard or hard == resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (8192, hard))


if __name__ == "__main__":
    sys.exit(main())
