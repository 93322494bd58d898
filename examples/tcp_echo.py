#!/usr/bin/env python3
"""A concurrent TCP echo server and client, written with asyncio streams.

The socket idea
---------------
TCP gives two programs a reliable, ordered *byte stream*.  It does not give
them messages.  If a client calls ``send(b"hello\\n")`` twice, the server's
``recv()`` may return ``b"hel"`` and then ``b"lo\\nhello\\n"``: any split is
legal, and which one you get depends on timing, buffer sizes and the network.
A program that treats one ``recv()`` as one message works on a quiet laptop and
breaks in production.  Both ends must therefore agree on *framing*, a rule for
where one message ends.  Here the rule is the simplest one, used by SMTP, FTP,
Redis and IRC: a message is a line ending in ``\\n``.
``StreamReader.readuntil(b"\\n")`` keeps partial reads in a buffer and hands
us exactly one complete line at a time, however the bytes arrived.

What the classic tutorial gets wrong, and what this file does instead:

* It serves one client at a time (``accept()``, then a blocking loop).  Here
  every connection gets its own ``handle_client`` task, so one thread
  serves many clients at once: while one waits for data, others run.
* It trusts the peer.  A client that sends a gigabyte without a newline would
  make a naive server buffer all of it.  Here a line may be at most
  ``--max-line`` bytes; a client that goes over is told so and disconnected.
* It treats a disconnect as a crash.  EOF (``recv()`` returning ``b""``) means
  the peer closed its side; a reset raises ``ConnectionResetError``.  Both are
  ordinary events here.  A last line without ``\\n`` before EOF is still echoed.
* It ignores back-pressure.  ``await writer.drain()`` pauses us while a client
  reads slower than we write, instead of buffering without limit in memory.

The same handler also serves a Unix domain socket (``AF_UNIX``, ``--unix
PATH``).  The stream API is identical; only the address differs: a file system
path instead of a host and port.  Unix sockets reach only the local machine,
and the file permissions on the socket path decide who may connect.

Try it::

    python examples/tcp_echo.py server --port 8007 --upper
    python examples/tcp_echo.py client --port 8007 hello world
    printf 'one\\ntwo\\n' | python examples/tcp_echo.py client --port 8007
    python examples/tcp_echo.py server --unix /tmp/echo.sock
    python examples/tcp_echo.py client --unix /tmp/echo.sock hello
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

DEFAULT_MAX_LINE = 64 * 1024


def log(message: str) -> None:
    """Diagnostics go to stderr; stdout carries only the ready line."""
    print(message, file=sys.stderr, flush=True)


def format_address(sockname: Any) -> str:
    """Turn ``getsockname()`` output into ``host:port`` or ``unix:/path``."""
    if isinstance(sockname, str):
        return f"unix:{sockname}"
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class EchoServer:
    def __init__(self, *, upper: bool, max_line: int) -> None:
        self.transform: Callable[[bytes], bytes] = bytes.upper if upper else bytes
        self.max_line = max_line
        self.connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    def on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """asyncio calls this for every new connection; it starts a handler task.

        Keeping the task (rather than handing start_server a coroutine function)
        lets shutdown find every connection, even one whose handler has not run yet.
        """
        task = asyncio.create_task(self.handle_client(reader, writer))
        self.connections[task] = writer
        task.add_done_callback(self.connections.pop)

    async def handle_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername") or "unix client"
        log(f"{peer}: connected")
        try:
            while True:
                try:
                    # One complete line, however many recv() calls it took.
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    # EOF.  exc.partial is whatever came after the last newline.
                    if exc.partial:
                        writer.write(self.transform(exc.partial))
                        await writer.drain()
                    log(f"{peer}: disconnected")
                    break
                except asyncio.LimitOverrunError:
                    writer.write(f"error: line longer than {self.max_line} bytes\n".encode())
                    await writer.drain()
                    log(f"{peer}: line too long, disconnecting")
                    break
                writer.write(self.transform(line))
                await writer.drain()  # back-pressure: wait if the client reads slowly
        except ConnectionError as exc:
            log(f"{peer}: connection lost ({exc.__class__.__name__})")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def close_clients(self) -> None:
        """Disconnect everybody and let each handler finish its clean-up."""
        for writer in list(self.connections.values()):
            writer.transport.abort()  # close() would wait for clients that do not read
        if self.connections:  # let every handler run its clean-up before we exit
            await asyncio.wait(list(self.connections))


def remove_stale_socket(path: str) -> None:
    """Remove a socket file left by a previous run, but never any other file."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    echo = EchoServer(upper=args.upper, max_line=args.max_line)
    # `limit` caps how much readuntil() will buffer while looking for b"\n".
    if args.unix:
        remove_stale_socket(args.unix)
        server = await asyncio.start_unix_server(
            echo.on_connect, path=args.unix, limit=args.max_line
        )
    else:
        server = await asyncio.start_server(
            echo.on_connect, args.host, args.port, limit=args.max_line
        )
    print(f"listening on {format_address(server.sockets[0].getsockname())}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        await echo.close_clients()
        await server.wait_closed()
        if args.unix:
            remove_stale_socket(args.unix)
        log("server stopped")


async def run_client(args: argparse.Namespace) -> int:
    if args.unix:
        reader, writer = await asyncio.open_unix_connection(args.unix)
    else:
        reader, writer = await asyncio.open_connection(args.host, args.port)

    async def messages() -> AsyncIterator[bytes]:
        if args.messages:
            for message in args.messages:
                yield message.encode() + b"\n"
        else:  # one line per request; the console is read in a worker thread
            while line := await asyncio.to_thread(sys.stdin.buffer.readline):
                yield line if line.endswith(b"\n") else line + b"\n"

    try:
        async for request in messages():
            writer.write(request)
            await writer.drain()
            try:
                reply = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                sys.stdout.buffer.write(exc.partial)
                log("server closed the connection")
                return 1
            sys.stdout.buffer.write(reply)
            sys.stdout.buffer.flush()
    except ConnectionError as exc:
        log(f"connection lost: {exc}")
        return 1
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="mode", required=True)
    for name in ("server", "client"):
        sub = commands.add_parser(name)
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=8007, help="0 picks a free port")
        sub.add_argument("--unix", metavar="PATH", help="use a Unix domain socket instead")
        if name == "server":
            sub.add_argument("--upper", action="store_true", help="echo in upper case")
            sub.add_argument("--max-line", type=int, default=DEFAULT_MAX_LINE)
        else:
            sub.add_argument("messages", nargs="*", help="lines to send (default: stdin)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mode == "server":
        asyncio.run(serve(args))
        return 0
    return asyncio.run(run_client(args))


if __name__ == "__main__":
    sys.exit(main())
