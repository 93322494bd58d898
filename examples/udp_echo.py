#!/usr/bin/env python3
"""A UDP echo server (asyncio ``DatagramProtocol``) and a client that retries.

The socket idea
---------------
UDP (``SOCK_DGRAM``) sends *datagrams*: independent packets of up to about
64 KiB.  Compared with TCP, three things change, and this example makes each
of them visible:

No connection.
    There is no ``listen()``/``accept()`` and no per-client socket.  The server
    has one socket; every ``recvfrom()`` returns a datagram *and* the address
    it came from, and the reply goes back with ``sendto(data, address)``.  Any
    program may send to the server at any moment, so the server keeps no
    state per client and never learns that a client has "gone away".

Message boundaries are kept.
    Each ``sendto()`` is exactly one datagram, and each ``recvfrom()`` returns
    exactly one whole datagram: never half of one, never two glued together
    (compare ``tcp_echo.py``, where the reader must find the line ends
    itself).  The flip side: a datagram bigger than the buffer you pass to
    ``recvfrom()`` is silently cut short, so receive with a 64 KiB buffer.

Delivery is not guaranteed.
    Datagrams can be lost, duplicated or reordered, and nobody tells you.  A
    client that waits for a reply must use a timeout, and should retry a few
    times before it gives up.  Because an answer to an *earlier* attempt may
    still arrive late, each request carries a sequence number and the client
    ignores replies whose number it is no longer waiting for.

On a loopback interface datagrams are practically never lost, so the server
can simulate loss: ``--drop-every N`` silently drops every N-th datagram it
receives.  Run the client against it to watch the retry path work, and with
``--drop-every 1`` to watch datagrams being reported as lost.

Try it::

    python examples/udp_echo.py server --port 9007 --drop-every 3
    python examples/udp_echo.py client --port 9007 one two three four five
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
from typing import cast

MAX_DATAGRAM = 65535  # the most one UDP datagram can carry (IPv4 payload is a bit less)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class EchoProtocol(asyncio.DatagramProtocol):
    """asyncio calls datagram_received() once per datagram, with its sender."""

    def __init__(self, drop_every: int) -> None:
        self.drop_every = drop_every
        self.received = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        if self.drop_every and self.received % self.drop_every == 0:
            log(f"datagram #{self.received} from {addr}: {len(data)} bytes, DROPPED (simulated)")
            return
        log(f"datagram #{self.received} from {addr}: {len(data)} bytes, echoed")
        assert self.transport is not None
        self.transport.sendto(data, addr)  # one datagram in, one datagram out

    def error_received(self, exc: Exception) -> None:
        # For example an ICMP "port unreachable" from an earlier reply.  UDP
        # has no connection to break, so we just note it and carry on.
        log(f"error received: {exc}")


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: EchoProtocol(args.drop_every), local_addr=(args.host, args.port)
    )
    host, port = transport.get_extra_info("sockname")[:2]
    print(f"listening on {host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        transport.close()
        log("server stopped")


def request(
    sock: socket.socket, seq: int, payload: bytes, args: argparse.Namespace
) -> tuple[bytes, int] | None:
    """Send one request until its echo comes back.  Returns (reply, attempts) or None."""
    datagram = f"{seq}:".encode() + payload
    for attempt in range(1, args.retries + 2):
        sock.send(datagram)  # exactly one datagram; a connected UDP socket knows the peer
        try:
            while True:  # skip stale replies to earlier attempts or requests
                reply = sock.recv(MAX_DATAGRAM)
                if reply == datagram:
                    return payload, attempt
                log(f"ignoring stale reply {reply[:20]!r}")
        except TimeoutError:
            if attempt <= args.retries:
                print(f"timeout #{seq} attempt {attempt}, retrying", flush=True)
        except ConnectionRefusedError:
            # connect()ed UDP sockets report ICMP "port unreachable" this way.
            print(f"refused #{seq} attempt {attempt}: nobody is listening", flush=True)
    return None


def run_client(args: argparse.Namespace) -> int:
    messages = [m.encode() for m in args.messages] or [
        line.rstrip(b"\n") for line in sys.stdin.buffer
    ]
    family, _, _, _, address = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        # connect() on UDP sends nothing; it just fixes the default destination
        # and makes the kernel discard datagrams from any other address.
        sock.connect(address)
        sock.settimeout(args.timeout)
        echoed = lost = retries = 0
        for seq, payload in enumerate(messages, start=1):
            result = request(sock, seq, payload, args)
            if result is None:
                lost += 1
                print(f"lost #{seq} after {args.retries + 1} attempts", flush=True)
                continue
            reply, attempts = result
            echoed += 1
            retries += attempts - 1
            print(f"echo #{seq}: {reply.decode(errors='replace')}", flush=True)
    print(f"summary: {len(messages)} sent, {echoed} echoed, {lost} lost, {retries} retries")
    return 1 if lost else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="mode", required=True)
    for name in ("server", "client"):
        sub = commands.add_parser(name)
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=9007, help="0 picks a free port")
        if name == "server":
            sub.add_argument(
                "--drop-every", type=int, default=0, metavar="N", help="drop every N-th datagram"
            )
        else:
            sub.add_argument("--timeout", type=float, default=1.0, help="seconds per attempt")
            sub.add_argument("--retries", type=int, default=3, help="extra attempts per message")
            sub.add_argument("messages", nargs="*", help="one datagram each (default: stdin lines)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mode == "server":
        asyncio.run(serve(args))
        return 0
    return run_client(args)


if __name__ == "__main__":
    sys.exit(main())
