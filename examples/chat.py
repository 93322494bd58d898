#!/usr/bin/env python3
"""A multi-user chat room: server, interactive client, and a tiny bot.

The socket idea
---------------
A chat server is the classic *many sockets at once* program: every line one
user sends must be written to all the other users' sockets.  Two problems
appear that a one-client echo server never has.

Fan-out must not block.  The naive loop ``for s in clients: s.sendall(line)``
stops the whole room as soon as one client stops reading: its socket buffers
fill up and ``sendall`` waits forever.  Here every client gets its own
*bounded* outgoing queue and its own writer task (``ChatRoom.pump``).  A
broadcast only does ``queue.put_nowait()``, which never waits.  If a client's
queue is full it has fallen too far behind, and it is disconnected so that the
room keeps going (``--queue-size`` lines of slack, plus the kernel's socket
buffers).

Input must be framed and capped.  A line is the bytes up to ``\\n``; a
trailing ``\\r`` is dropped, so ``nc`` (LF) and telnet (CRLF) both work.
A line longer than ``--max-line`` bytes gets the client disconnected rather
than buffered without limit, and control characters are removed so that one
user cannot send terminal escape sequences to everybody else's screen.

Commands: ``/nick NAME``, ``/who`` and ``/quit``; anything else is said to
the room as ``<name> text``.  Server notices start with ``* ``.

The ``bot`` mode is an ordinary client, run by a program: it reads the room's
lines and answers the ones addressed to it (``bot: time``, ``bot: echo hi``,
``bot: help``).

Try it::

    python examples/chat.py server --port 7000
    nc 127.0.0.1 7000                       # or: telnet 127.0.0.1 7000
    python examples/chat.py client --port 7000
    python examples/chat.py bot --port 7000  # then say "bot: help" in the room
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import re
import signal
import sys
import threading

NICK_RE = re.compile(r"[A-Za-z0-9_-]{1,20}")
LINGER_SECONDS = 10.0  # how long a departing client gets to receive its last lines


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def clean(raw: bytes) -> str:
    """Decode one received line and strip the line end and control characters."""
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    return "".join(ch for ch in text if ch.isprintable() or ch == "\t").strip()


class Client:
    def __init__(self, name: str, writer: asyncio.StreamWriter, queue_size: int) -> None:
        self.name = name
        self.writer = writer
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(queue_size)
        self.gone = False  # left the room; send nothing more to it


class ChatRoom:
    def __init__(self, max_line: int, queue_size: int) -> None:
        self.max_line = max_line
        self.queue_size = queue_size
        self.clients: list[Client] = []
        self.guests = 0
        self.connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    # -- sending -------------------------------------------------------------
    def send(self, client: Client, text: str) -> None:
        """Queue one line for one client; never waits."""
        if client.gone:
            return
        try:
            client.queue.put_nowait(text.encode() + b"\r\n")
        except asyncio.QueueFull:
            log(f"{client.name} cannot keep up, dropping it")
            client.writer.transport.abort()  # close now, discarding unsent data
            self.leave(client, "was disconnected (too slow)")

    def broadcast(self, text: str, exclude: Client | None = None) -> None:
        for client in list(self.clients):
            if client is not exclude:
                self.send(client, text)

    def leave(self, client: Client, how: str) -> None:
        if not client.gone:
            client.gone = True
            self.clients.remove(client)
            self.broadcast(f"* {client.name} {how}")

    async def pump(self, client: Client) -> None:
        """The only place that writes to this client's socket."""
        while (data := await client.queue.get()) is not None:
            client.writer.write(data)
            await client.writer.drain()  # waits here if the client reads slowly

    # -- receiving -----------------------------------------------------------
    def name_in_use(self, name: str) -> bool:
        return any(c.name.lower() == name.lower() for c in self.clients)

    def new_guest_name(self) -> str:
        while True:
            self.guests += 1
            if not self.name_in_use(name := f"guest{self.guests}"):
                return name

    def handle_line(self, client: Client, line: str) -> bool:
        """Act on one line from a client.  Returns False when it wants to quit."""
        command, _, rest = line.partition(" ")
        if not line:
            pass
        elif command == "/quit":
            self.send(client, "* bye")
            return False
        elif command == "/who":
            self.send(client, "* in the room: " + ", ".join(c.name for c in self.clients))
        elif command == "/nick":
            new = rest.strip()
            if not NICK_RE.fullmatch(new):
                self.send(client, "* a nick is 1-20 letters, digits, _ or -")
            elif self.name_in_use(new) and new.lower() != client.name.lower():
                self.send(client, f"* nick {new} is taken")
            else:
                old, client.name = client.name, new
                self.send(client, f"* you are now {new}")
                self.broadcast(f"* {old} is now known as {new}", exclude=client)
        elif command.startswith("/"):
            self.send(client, f"* unknown command {command}; try /nick NAME, /who, /quit")
        else:
            self.broadcast(f"<{client.name}> {line}", exclude=client)
        return True

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
        client = Client(self.new_guest_name(), writer, self.queue_size)
        self.clients.append(client)
        sender = asyncio.create_task(self.pump(client))
        log(f"{client.name} connected from {writer.get_extra_info('peername')}")
        self.send(client, f"* welcome {client.name}; commands: /nick NAME, /who, /quit")
        self.broadcast(f"* {client.name} joined", exclude=client)
        try:
            while not client.gone:
                try:
                    raw = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:  # EOF: the client went away
                    break
                except asyncio.LimitOverrunError:
                    self.send(client, f"* line longer than {self.max_line} bytes; goodbye")
                    break
                if not self.handle_line(client, clean(raw)):
                    break
                # Yield to the event loop between lines, so that the writer tasks
                # can move a burst of broadcasts out of the queues as it arrives.
                await asyncio.sleep(0)
        except ConnectionError:
            pass
        finally:
            self.leave(client, "left")
            try:
                client.queue.put_nowait(None)  # tells pump() to stop after the last line
            except asyncio.QueueFull:
                writer.transport.abort()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(sender, LINGER_SECONDS)
            writer.close()
            log(f"{client.name} disconnected")

    async def close_all(self) -> None:
        for writer in list(self.connections.values()):
            writer.transport.abort()  # close() would wait for clients that do not read
        if self.connections:  # let every handler run its clean-up before we exit
            await asyncio.wait(list(self.connections))


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    room = ChatRoom(args.max_line, args.queue_size)
    server = await asyncio.start_server(room.on_connect, args.host, args.port, limit=args.max_line)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        await room.close_all()
        await server.wait_closed()
        log("server stopped")


def answer(question: str) -> str:
    """The bot's whole brain: a few fixed rules."""
    word, _, rest = question.strip().partition(" ")
    word = word.lower()
    if word == "time":
        return "it is " + datetime.datetime.now().astimezone().strftime("%H:%M:%S %Z")
    if word == "echo":
        return rest
    if word in ("hello", "hi"):
        return "hello!"
    return "I know: time, echo TEXT, help"


async def run_bot(args: argparse.Namespace) -> int:
    reader, writer = await asyncio.open_connection(args.host, args.port)
    writer.write(f"/nick {args.nick}\r\n".encode())
    addressed = re.compile(rf"\b{re.escape(args.nick)}:\s*(.*)", re.IGNORECASE)
    while line := await reader.readline():
        text = line.decode("utf-8", errors="replace").rstrip("\r\n")
        if text.startswith(f"* nick {args.nick} is taken"):
            log(text)
            return 1
        said = re.fullmatch(r"<([^>]+)> (.*)", text)
        if said and (match := addressed.search(said[2])):
            writer.write(f"{said[1]}: {answer(match[1])}\r\n".encode())
            await writer.drain()
    log("server closed the connection")
    return 0


async def run_client(args: argparse.Namespace) -> int:
    reader, writer = await asyncio.open_connection(args.host, args.port)
    loop = asyncio.get_running_loop()
    typed: asyncio.Queue[bytes] = asyncio.Queue()

    def read_console() -> None:
        # A blocking console read cannot be awaited portably, so a daemon thread
        # (one that does not keep the program alive) feeds lines into a queue.
        try:
            for line in sys.stdin.buffer:
                loop.call_soon_threadsafe(typed.put_nowait, line)
            loop.call_soon_threadsafe(typed.put_nowait, b"")
        except RuntimeError:  # the event loop has already finished
            pass

    async def upstream() -> None:
        while line := await typed.get():
            writer.write(line.rstrip(b"\r\n") + b"\r\n")
            await writer.drain()
        writer.write(b"/quit\r\n")  # end of input: leave politely
        await writer.drain()

    threading.Thread(target=read_console, daemon=True).start()
    sending = asyncio.create_task(upstream())
    try:
        while line := await reader.readline():
            print(line.decode("utf-8", errors="replace").rstrip("\r\n"), flush=True)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sending
        writer.close()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="mode", required=True)
    for name in ("server", "client", "bot"):
        sub = commands.add_parser(name)
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=7000, help="0 picks a free port")
        if name == "server":
            sub.add_argument("--max-line", type=int, default=1024, help="bytes per line")
            sub.add_argument("--queue-size", type=int, default=100, help="lines per client")
        if name == "bot":
            sub.add_argument("--nick", default="bot")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.mode == "server":
            asyncio.run(serve(args))
            return 0
        return asyncio.run(run_bot(args) if args.mode == "bot" else run_client(args))
    except KeyboardInterrupt:
        return 130
    except ConnectionError as exc:
        log(f"connection failed: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
