#!/usr/bin/env python3
"""Run an allowed program on a server and get its output back, safely.

The socket idea
---------------
The classic "remote shell" tutorial does ``os.popen(conn.recv(1024))``: it
runs whatever text arrives through ``/bin/sh``.  Anyone who can connect owns
the machine (``ls; rm -rf ~``), one recv() may hold half a command or two of
them, and a command that never ends or prints forever hangs the server.
This version fixes each of those:

* **Framing.**  Requests and replies are length-prefixed frames, the same
  idea as ``framed_transfer.py``: a 5-byte header (``struct`` format
  ``!BI``: type, payload length) and then exactly that many bytes, read with
  ``StreamReader.readexactly()``.  The length is checked against a cap before
  it is read.
* **Authentication.**  Each request carries a shared token, compared with
  ``hmac.compare_digest``, which takes the same time wherever the first wrong
  byte is, so response timing does not leak the token byte by byte.  Pass it
  in the ``REMOTE_COMMAND_TOKEN`` environment variable rather than
  ``--token``, which other users can see in ``ps``.  (The token crosses the
  network in clear text: on a real network, wrap this in TLS.)
* **An allowlist, and no shell.**  The client names a command; the server
  runs it only if the name is on its ``--allow NAME=/path/to/program`` list,
  with ``asyncio.create_subprocess_exec(path, *args)``.  Arguments go to the
  program as separate argv strings, so ``; rm -rf /`` is just text that the
  program receives literally; nothing ever parses it as shell syntax.  The
  program gets an empty environment (only ``PATH``), so it cannot read the
  server's token from it.
* **Limits.**  A command that runs longer than ``--timeout`` seconds is
  killed, and so is one that prints more than ``--max-output`` bytes (its
  output is truncated).  Either way the client is told what happened.  The
  program runs in its own process group, so the kill also reaches its children.

Reply frames: OUTPUT (a piece of the program's stdout and stderr), then one
RESULT (JSON: exit code, timed out, truncated) or an ERROR (JSON: reason).

Try it::

    export REMOTE_COMMAND_TOKEN=s3cret
    python examples/remote_command.py server --port 9010 \\
        --allow echo=/bin/echo --allow date=/bin/date --timeout 5
    python examples/remote_command.py client --port 9010 echo 'hello; rm -rf /'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import os
import signal
import struct
import sys
from typing import Any

HEADER = struct.Struct("!BI")  # frame type, payload length
REQUEST, OUTPUT, RESULT, ERROR = 1, 2, 3, 4
MAX_REQUEST = 64 * 1024  # cap on a request frame (token, name and arguments)
MAX_FRAME = 256 * 1024  # cap on any frame the client accepts
CHUNK = 64 * 1024  # output bytes per OUTPUT frame
MAX_ARGS = 256
REQUEST_TIMEOUT = 10.0  # a client must send its request within this time
TOKEN_ENV = "REMOTE_COMMAND_TOKEN"


class ProtocolError(Exception):
    pass


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def read_frame(reader: asyncio.StreamReader, max_payload: int) -> tuple[int, bytes]:
    kind, length = HEADER.unpack(await reader.readexactly(HEADER.size))
    if length > max_payload:
        raise ProtocolError(f"frame of {length} bytes exceeds the cap of {max_payload}")
    return kind, await reader.readexactly(length)


def write_frame(writer: asyncio.StreamWriter, kind: int, payload: bytes) -> None:
    writer.write(HEADER.pack(kind, len(payload)) + payload)


def write_json(writer: asyncio.StreamWriter, kind: int, message: dict[str, Any]) -> None:
    write_frame(writer, kind, json.dumps(message).encode())


class CommandServer:
    def __init__(self, args: argparse.Namespace, token: str, allowed: dict[str, str]) -> None:
        self.token = token.encode()
        self.allowed = allowed
        self.timeout: float = args.timeout
        self.max_output: int = args.max_output
        self.processes: set[asyncio.subprocess.Process] = set()
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
        peer = writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                kind, payload = await read_frame(reader, MAX_REQUEST)
            if kind != REQUEST:
                raise ProtocolError(f"expected a request, got frame type {kind}")
            request = json.loads(payload)
            if not isinstance(request, dict):
                raise ProtocolError("request is not a JSON object")
            if refusal := self.check(request):
                log(f"{peer}: refused: {refusal}")
                write_json(writer, ERROR, {"error": refusal})
            else:
                log(f"{peer}: running {request['command']} {request['args']}")
                await self.run(self.allowed[request["command"]], request["args"], writer)
            await writer.drain()
        except (ProtocolError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log(f"{peer}: bad request: {exc!r}")
        except ConnectionError:
            log(f"{peer}: connection lost")
        finally:
            writer.close()

    def check(self, request: dict[str, Any]) -> str | None:
        """Return why a request is refused, or None if it may run."""
        token = request.get("token")
        # Check the token first, so strangers learn nothing about the allowlist.
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.token):
            return "authentication failed"
        command, args = request.get("command"), request.get("args")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            return "args must be a list of strings"
        if len(args) > MAX_ARGS:
            return f"at most {MAX_ARGS} arguments"
        if not isinstance(command, str) or command not in self.allowed:
            return f"command not allowed: {command!r}"
        return None

    async def run(self, program: str, args: list[str], writer: asyncio.StreamWriter) -> None:
        proc = await asyncio.create_subprocess_exec(
            program,  # an absolute path from the allowlist, never a shell
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={"PATH": os.defpath},
            start_new_session=True,  # own process group: we can kill it with its children
        )
        assert proc.stdout is not None
        self.processes.add(proc)
        sent, truncated, timed_out = 0, False, False
        try:
            async with asyncio.timeout(self.timeout):
                while chunk := await proc.stdout.read(CHUNK):
                    if sent + len(chunk) > self.max_output:
                        chunk, truncated = chunk[: self.max_output - sent], True
                    if chunk:
                        write_frame(writer, OUTPUT, chunk)
                        await writer.drain()
                        sent += len(chunk)
                    if truncated:
                        break
                else:
                    await proc.wait()
        except TimeoutError:
            timed_out = True
        finally:
            kill(proc)  # timed out, truncated, or the client went away
            await proc.wait()
            self.processes.discard(proc)
        result = {"exit_code": proc.returncode, "timed_out": timed_out, "truncated": truncated}
        log(f"finished {program}: {result}")
        write_json(writer, RESULT, result | {"output_bytes": sent, "timeout": self.timeout})

    async def shutdown(self) -> None:
        for proc in list(self.processes):
            kill(proc)
        for writer in list(self.connections.values()):
            writer.transport.abort()  # close() would wait for clients that do not read
        if self.connections:  # let every handler run its clean-up before we exit
            await asyncio.wait(list(self.connections))


def kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def load_allowlist(args: argparse.Namespace) -> dict[str, str]:
    allowed: dict[str, str] = {}
    if args.allow_file:
        with open(args.allow_file, encoding="utf-8") as f:
            allowed.update(json.load(f))
    for item in args.allow:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--allow expects NAME=/path/to/program, got {item!r}")
        allowed[name] = path
    for name, path in allowed.items():
        if not isinstance(path, str) or not os.path.isabs(path) or not os.access(path, os.X_OK):
            raise SystemExit(
                f"allowed command {name!r}: {path!r} is not an executable absolute path"
            )
    return allowed


async def serve(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        log(f"a token is required: set {TOKEN_ENV} or pass --token")
        return 2
    allowed = load_allowlist(args)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    commands = CommandServer(args, token, allowed)
    server = await asyncio.start_server(commands.on_connect, args.host, args.port)
    host, port = server.sockets[0].getsockname()[:2]
    log(f"allowed commands: {', '.join(sorted(allowed)) or '(none)'}")
    print(f"listening on {host}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        await commands.shutdown()
        await server.wait_closed()
        log("server stopped")
    return 0


async def run_client(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get(TOKEN_ENV, "")
    reader, writer = await asyncio.open_connection(args.host, args.port)
    try:
        request = {"token": token, "command": args.command, "args": args.args}
        write_json(writer, REQUEST, request)
        await writer.drain()
        while True:
            kind, payload = await read_frame(reader, MAX_FRAME)
            if kind == OUTPUT:
                sys.stdout.buffer.write(payload)
                sys.stdout.buffer.flush()
            elif kind == ERROR:
                log(f"error: refused: {json.loads(payload)['error']}")
                return 2
            elif kind == RESULT:
                return report(json.loads(payload))
            else:
                raise ProtocolError(f"unexpected frame type {kind}")
    finally:
        writer.close()


def report(result: dict[str, Any]) -> int:
    """Describe the outcome on stderr and turn it into our exit status."""
    code = result["exit_code"]
    if result["truncated"]:
        log(f"output truncated after {result['output_bytes']} bytes; the command was killed")
    if result["timed_out"]:
        log(f"timed out after {result['timeout']} s; the command was killed")
        return 124  # the convention of timeout(1)
    log(f"exit code {code}")
    return 128 - code if code < 0 else code  # killed by signal N -> 128 + N


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="mode", required=True)
    for name in ("server", "client"):
        sub = commands.add_parser(name)
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=9010, help="0 picks a free port")
        sub.add_argument("--token", help=f"shared secret (default: ${TOKEN_ENV})")
        if name == "server":
            sub.add_argument("--allow", action="append", default=[], metavar="NAME=PATH")
            sub.add_argument("--allow-file", metavar="JSON", help='{"name": "/path", ...}')
            sub.add_argument("--timeout", type=float, default=10.0, help="seconds per command")
            sub.add_argument("--max-output", type=int, default=1024 * 1024, help="bytes")
        else:
            sub.add_argument("command", help="a name on the server's allowlist")
            sub.add_argument("args", nargs=argparse.REMAINDER, help="passed literally")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(serve(args) if args.mode == "server" else run_client(args))
    except asyncio.IncompleteReadError:
        log("error: the server closed the connection")
        return 1
    except (ConnectionError, ProtocolError) as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
