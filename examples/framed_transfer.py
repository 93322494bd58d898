#!/usr/bin/env python3
"""File upload and download over one TCP connection, with length-prefixed frames.

The socket idea
---------------
TCP is a byte stream, not a message stream.  ``send()`` does not put a
boundary on the wire, and ``recv(1024)`` returns *whatever bytes have
arrived*, from 1 up to 1024 of them.  Two sends can come out of one recv
glued together (often called "sticky packets"), and one send can need
several recvs.  The classic tutorial file transfer::

    conn.send(filename)             # receiver: name = conn.recv(1024)
    conn.send(file_bytes)           # receiver: while d := conn.recv(1024): ...

works in a quick test and then saves a file called ``report.txt%PDF-1.4...``
with its first kilobyte missing, because both sends came out of the first
recv.  Run ``python examples/framed_transfer.py naive`` to watch it happen.

The fix is *framing*: put the length in front of every message, and read
exactly that many bytes.  ``recv_exactly(sock, n)`` loops until it has ``n``
bytes, and treats EOF before that as an error, not as "done".  Every frame
here starts with a fixed 39-byte header, ``struct`` format ``!2sBI32s``:

    ======  =======  ====================================================
    magic   2 bytes  ``b"FT"``; anything else is not our protocol
    type    1 byte   UPLOAD, OFFSET, DATA, DONE, DOWNLOAD, INFO or ERROR
    length  4 bytes  payload size, big-endian ("network byte order")
    sha256  32 bytes digest of the payload, checked by the receiver
    ======  =======  ====================================================

The length is checked against a cap *before* anything is read, so a peer
cannot make us allocate 4 GiB by sending a large number.  Control messages
(file name, size, offsets) are small JSON payloads; file content travels in
DATA frames of 64 KiB.  Because the type field tells them apart, commands and
data share one connection (FTP, which fileferry implements, instead opens a
second connection for every transfer).

Resuming.  An upload first sends name, size and SHA-256 of the whole file.
The server writes what it receives to a hidden ``.NAME.part`` file and answers
with the number of bytes it already has, so a client whose connection broke
just reconnects and continues from there.  Only complete, checksummed frames
are ever written, so the ``.part`` file always holds a correct prefix.  When
all bytes are in, the server checks the SHA-256 of the whole file and only
then renames ``.part`` to the real name (``os.replace`` is atomic), so no
reader ever sees a half-written file under the final name.  (If a ``.part``
left over from a *different* file was resumed, that check fails, the ``.part``
is discarded, and the client uploads again from the start.)

Safety.  The server serves one directory.  A file name from the network must
be a plain base name: no ``/`` or ``\\``, not starting with ``.`` (which also
rules out ``..`` and the ``.part`` files), no control characters.

Try it::

    python examples/framed_transfer.py server --root /tmp/shared --port 9009
    python examples/framed_transfer.py client --port 9009 upload photo.jpg
    python examples/framed_transfer.py client --port 9009 download photo.jpg -o copy.jpg
    python examples/framed_transfer.py naive
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import json
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
from pathlib import Path
from typing import Any

MAGIC = b"FT"
HEADER = struct.Struct("!2sBI32s")  # magic, type, payload length, payload SHA-256
MAX_PAYLOAD = 1024 * 1024  # largest frame we accept
MAX_CONTROL = 4096  # largest JSON control message we accept
CHUNK = 64 * 1024  # file bytes per DATA frame


class Kind(enum.IntEnum):
    UPLOAD = 1  # client -> server  {"name", "size", "sha256"}
    OFFSET = 2  # server -> client  {"offset"}: bytes the server already has
    DATA = 3  # file content, in either direction
    DONE = 4  # server -> client  {"size", "sha256"}: upload verified and stored
    DOWNLOAD = 5  # client -> server  {"name"}
    INFO = 6  # server -> client  {"size", "sha256"}; DATA frames follow
    ERROR = 7  # server -> client  {"error"}


class ProtocolError(Exception):
    """The peer broke the protocol; the connection cannot continue."""


class Refused(Exception):
    """A request we answer with an ERROR frame."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- framing -------------------------------------------------------------------
def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Read exactly n bytes.  One recv() may return fewer, so loop."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), CHUNK))
        if not chunk:  # EOF: the peer closed the connection
            raise EOFError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def make_frame(kind: Kind, payload: bytes) -> bytes:
    header = HEADER.pack(MAGIC, kind, len(payload), hashlib.sha256(payload).digest())
    # One sendall() for header and payload: two small sends in a row can be
    # delayed by Nagle's algorithm and delayed ACKs.
    return header + payload


def send_frame(sock: socket.socket, kind: Kind, payload: bytes = b"") -> None:
    sock.sendall(make_frame(kind, payload))


def recv_frame(sock: socket.socket, max_payload: int = MAX_PAYLOAD) -> tuple[Kind, bytes]:
    magic, kind, length, digest = HEADER.unpack(recv_exactly(sock, HEADER.size))
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}")
    if length > max_payload:  # check before reading: never trust a length
        raise ProtocolError(f"frame of {length} bytes exceeds the cap of {max_payload}")
    try:
        frame_kind = Kind(kind)
    except ValueError:
        raise ProtocolError(f"unknown frame type {kind}") from None
    payload = recv_exactly(sock, length)
    if hashlib.sha256(payload).digest() != digest:
        raise ProtocolError("frame checksum mismatch")
    return frame_kind, payload


def send_json(sock: socket.socket, kind: Kind, message: dict[str, Any]) -> None:
    send_frame(sock, kind, json.dumps(message).encode())


def recv_json(sock: socket.socket, *expected: Kind) -> tuple[Kind, dict[str, Any]]:
    kind, payload = recv_frame(sock, MAX_CONTROL)
    try:
        message = json.loads(payload)
    except ValueError:
        raise ProtocolError("control frame is not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("control frame is not a JSON object")
    if kind == Kind.ERROR and Kind.ERROR not in expected:
        raise Refused(str(message.get("error")))
    if kind not in expected:
        raise ProtocolError(f"expected {[k.name for k in expected]}, got {kind.name}")
    return kind, message


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def safe_name(name: object) -> str:
    """Accept only a plain file name inside the served directory."""
    if (
        not isinstance(name, str)
        or not name
        or len(name.encode()) > 255
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or not name.isprintable()
    ):
        raise Refused(f"bad file name {name!r}: only a plain base name is allowed")
    return name


# -- server --------------------------------------------------------------------
class FileServer(socketserver.ThreadingTCPServer):
    """One thread per connection; serves the files in one directory."""

    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], args: argparse.Namespace) -> None:
        super().__init__(address, Handler)
        self.root = Path(args.root).resolve()
        self.max_file_size: int = args.max_file_size
        self.idle_timeout: float = args.idle_timeout
        self.busy: set[str] = set()  # names with an upload in progress
        self.busy_changed = threading.Condition()

    def claim(self, name: str) -> None:
        """Wait until no other connection is uploading this name, then claim it."""
        with self.busy_changed:
            if not self.busy_changed.wait_for(lambda: name not in self.busy, self.idle_timeout):
                raise Refused(f"{name} is being uploaded by another connection")
            self.busy.add(name)

    def release(self, name: str) -> None:
        with self.busy_changed:
            self.busy.discard(name)
            self.busy_changed.notify_all()


class Handler(socketserver.BaseRequestHandler):
    server: FileServer
    request: socket.socket

    def handle(self) -> None:
        sock, peer = self.request, self.client_address
        sock.settimeout(self.server.idle_timeout)  # a silent peer must not hold a thread forever
        try:
            while True:
                try:
                    kind, message = recv_json(sock, Kind.UPLOAD, Kind.DOWNLOAD)
                    if kind == Kind.UPLOAD:
                        self.receive_upload(sock, message)
                    else:
                        self.send_download(sock, message)
                except Refused as exc:
                    log(f"{peer}: refused: {exc}")
                    send_json(sock, Kind.ERROR, {"error": str(exc)})
        except EOFError:
            log(f"{peer}: disconnected")
        except (ProtocolError, OSError) as exc:
            log(f"{peer}: closing connection: {exc}")

    def receive_upload(self, sock: socket.socket, request: dict[str, Any]) -> None:
        name = safe_name(request.get("name"))
        size, digest = request.get("size"), request.get("sha256")
        if not isinstance(size, int) or not 0 <= size <= self.server.max_file_size:
            raise Refused(f"size must be between 0 and {self.server.max_file_size}")
        if not isinstance(digest, str):
            raise Refused("sha256 missing")
        part = self.server.root / f".{name}.part"
        self.server.claim(name)
        try:
            offset = part.stat().st_size if part.exists() else 0
            if offset > size:  # left over from some other file
                offset = 0
            hasher = hashlib.sha256()
            with open(part, "r+b" if offset else "w+b") as f:
                while data := f.read(min(CHUNK, offset - f.tell())):  # hash what we have
                    hasher.update(data)
                f.truncate(offset)
                send_json(sock, Kind.OFFSET, {"offset": offset})
                received = offset
                try:
                    while received < size:
                        kind, data = recv_frame(sock)
                        if kind != Kind.DATA or received + len(data) > size:
                            raise ProtocolError("unexpected frame during upload")
                        f.write(data)
                        hasher.update(data)
                        received += len(data)
                except EOFError:
                    log(f"upload of {name} interrupted; kept {received} bytes in {part.name}")
                    raise
            if hasher.hexdigest() != digest:
                part.unlink()
                raise Refused(f"SHA-256 of {name} does not match; upload discarded")
            os.replace(part, self.server.root / name)  # atomic: all or nothing
            log(f"stored {name}: {size} bytes (resumed from {offset})")
            send_json(sock, Kind.DONE, {"size": size, "sha256": digest})
        finally:
            self.server.release(name)

    def send_download(self, sock: socket.socket, request: dict[str, Any]) -> None:
        path = self.server.root / safe_name(request.get("name"))
        if path.is_symlink() or not path.is_file():
            raise Refused(f"no such file: {path.name}")
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            digest = hashlib.file_digest(f, "sha256").hexdigest()
            f.seek(0)
            send_json(sock, Kind.INFO, {"size": size, "sha256": digest})
            sent = 0
            while sent < size:
                chunk = f.read(min(CHUNK, size - sent))
                if not chunk:
                    raise ProtocolError(f"{path.name} shrank while being sent")
                send_frame(sock, Kind.DATA, chunk)
                sent += len(chunk)
        log(f"sent {path.name}: {size} bytes")


def serve(args: argparse.Namespace) -> int:
    if not Path(args.root).is_dir():
        log(f"not a directory: {args.root}")
        return 2
    # Block SIGINT and SIGTERM in this thread and so in every thread it starts;
    # then only sigwait() below receives them, however busy the others are.
    signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    with FileServer((args.host, args.port), args) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        host, port = server.server_address[:2]
        print(f"listening on {host}:{port}", flush=True)
        signal.sigwait(signals)
        server.shutdown()  # stops serve_forever(); open transfers are abandoned
        thread.join()
    log("server stopped")
    return 0


# -- client --------------------------------------------------------------------
def upload(sock: socket.socket, args: argparse.Namespace) -> int:
    path = Path(args.file)
    name = args.name or path.name
    size, digest = path.stat().st_size, file_sha256(path)
    send_json(sock, Kind.UPLOAD, {"name": name, "size": size, "sha256": digest})
    _, reply = recv_json(sock, Kind.OFFSET)
    offset = int(reply["offset"])
    print(f"server has {offset} of {size} bytes", flush=True)
    with open(path, "rb") as f:
        f.seek(offset)
        sent = 0
        while offset + sent < size:
            chunk = f.read(min(CHUNK, size - offset - sent))
            if args.stop_after is not None and sent + len(chunk) > args.stop_after:
                # Simulate a broken connection: half a frame, then hang up.
                keep = args.stop_after - sent
                sock.sendall(make_frame(Kind.DATA, chunk)[: HEADER.size + keep])
                print(f"stopped after {args.stop_after} bytes (simulated interruption)")
                return 3
            send_frame(sock, Kind.DATA, chunk)
            sent += len(chunk)
    recv_json(sock, Kind.DONE)
    print(f"uploaded {name}: {size} bytes, resumed from {offset}, sha256 {digest}")
    return 0


def download(sock: socket.socket, args: argparse.Namespace) -> int:
    dest = Path(args.output or args.name)
    send_json(sock, Kind.DOWNLOAD, {"name": args.name})
    _, info = recv_json(sock, Kind.INFO)
    size, digest = int(info["size"]), str(info["sha256"])
    part = dest.with_name(dest.name + ".part")
    hasher, received = hashlib.sha256(), 0
    with open(part, "wb") as f:
        while received < size:
            kind, data = recv_frame(sock)
            if kind != Kind.DATA or received + len(data) > size:
                raise ProtocolError("unexpected frame during download")
            f.write(data)
            hasher.update(data)
            received += len(data)
    if hasher.hexdigest() != digest:
        part.unlink()
        raise ProtocolError("SHA-256 mismatch; download discarded")
    os.replace(part, dest)
    print(f"downloaded {args.name} to {dest}: {size} bytes, sha256 {digest}")
    return 0


def run_client(args: argparse.Namespace) -> int:
    try:
        with socket.create_connection((args.host, args.port), timeout=args.timeout) as sock:
            return upload(sock, args) if args.action == "upload" else download(sock, args)
    except Refused as exc:
        print(f"error: server refused: {exc}", file=sys.stderr)
        return 2
    except (ProtocolError, EOFError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


# -- the naive way, for comparison ---------------------------------------------
def naive_demo() -> int:
    """Send three messages, then receive them naively and framed."""
    messages = [b"notes.txt", b"hello", b"x" * 5000]
    show = [m if len(m) < 20 else f"<{len(m)} bytes>" for m in messages]
    print(f"sender: {len(messages)} separate sendall() calls: {show}")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        for framed in (False, True):
            with socket.create_connection(listener.getsockname()) as sender:
                receiver, _ = listener.accept()
                with receiver:
                    for m in messages:  # small enough to sit in the socket buffers
                        sender.sendall(make_frame(Kind.DATA, m) if framed else m)
                    sender.shutdown(socket.SHUT_WR)
                    got: list[bytes] = []
                    while True:
                        if framed:
                            try:
                                got.append(recv_frame(receiver)[1])
                            except EOFError:
                                break
                        elif chunk := receiver.recv(1024):  # the tutorial's loop
                            got.append(chunk)
                        else:
                            break
            how = "recv_frame()" if framed else "recv(1024)"
            verdict = "intact" if got == messages else "boundaries LOST"
            sizes = [len(g) for g in got]
            print(f"{how}: {len(got)} reads, sizes {sizes}: {verdict}")
            if not framed:
                print(f"  the naive receiver thinks the file name is {got[0][:40]!r}...")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="mode", required=True)
    server = commands.add_parser("server")
    client = commands.add_parser("client")
    commands.add_parser("naive", help="show why a bare recv() loop breaks messages")
    for sub in (server, client):
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=9009, help="0 picks a free port")
    server.add_argument("--root", default=".", help="directory to serve")
    server.add_argument("--max-file-size", type=int, default=1 << 30)
    server.add_argument("--idle-timeout", type=float, default=60.0)
    client.add_argument("--timeout", type=float, default=30.0)
    actions = client.add_subparsers(dest="action", required=True)
    up = actions.add_parser("upload")
    up.add_argument("file")
    up.add_argument("--name", help="name on the server (default: the file's name)")
    up.add_argument("--stop-after", type=int, metavar="BYTES", help="simulate a broken upload")
    down = actions.add_parser("download")
    down.add_argument("name")
    down.add_argument("-o", "--output", help="local path (default: NAME)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mode == "server":
        return serve(args)
    if args.mode == "client":
        return run_client(args)
    return naive_demo()


if __name__ == "__main__":
    sys.exit(main())
