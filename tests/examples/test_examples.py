"""End-to-end tests for the teaching programs in examples/.

Every server runs as a real subprocess on port 0; the tests talk to it with the
program's own client mode and with raw sockets.
"""

from __future__ import annotations

import ftplib
import hashlib
import importlib.util
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT = 20.0  # seconds for any single wait
TOKEN = "correct horse battery staple"


def run(script: str, *args: str, input: bytes = b"", env: dict[str, str] | None = None):
    """Run an example to completion (a client, usually) and return the result."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        input=input,
        capture_output=True,
        timeout=TIMEOUT,
        env={**os.environ, **(env or {})},
    )


def connect(server) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Lines:
    """Line-oriented reading from a raw socket, as a chat user would see it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def readline(self) -> str | None:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def expect(self, pattern: str) -> tuple[re.Match[str], list[str]]:
        """Read lines until one matches; return the match and the lines skipped."""
        skipped = []
        while (line := self.readline()) is not None:
            line = line.removesuffix("\r")  # the chat server ends lines with CRLF
            if match := re.fullmatch(pattern, line):
                return match, skipped
            skipped.append(line)
        raise AssertionError(f"EOF before {pattern!r}; saw {skipped}")


# -- tcp_echo ------------------------------------------------------------------
def test_tcp_echo_client(procs) -> None:
    server = procs.server("tcp_echo.py", "--port", "0")
    assert re.fullmatch(r"127\.0\.0\.1:\d+", server.address)
    result = run("tcp_echo.py", "client", "--port", str(server.port), "hello", "two words")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hello\ntwo words\n"


def test_tcp_echo_upper_from_stdin(procs) -> None:
    server = procs.server("tcp_echo.py", "--port", "0", "--upper")
    result = run("tcp_echo.py", "client", "--port", str(server.port), input=b"abc\nx-y z")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ABC\nX-Y Z\n"


def test_tcp_echo_large_and_pipelined_bytes_exact(procs) -> None:
    server = procs.server("tcp_echo.py", "--port", "0")
    rng = random.Random(1)
    lines = [bytes(rng.randrange(256) for _ in range(rng.randrange(200))) for _ in range(2000)]
    lines = [line.replace(b"\n", b"") + b"\n" for line in lines]
    big = os.urandom(60_000).replace(b"\n", b"") + b"\n"  # far more than one recv()
    payload = b"".join(lines[:1000]) + big + b"".join(lines[1000:]) + b"no newline at the end"
    with connect(server) as sock:

        def send() -> None:  # send everything at once while the main thread reads
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = recv_all(sock)
        sender.join(TIMEOUT)
    assert received == payload


def test_tcp_echo_serves_clients_concurrently(procs) -> None:
    server = procs.server("tcp_echo.py", "--port", "0")
    with connect(server) as idle, connect(server) as active:
        idle.sendall(b"half a li")  # an unfinished line must not block anybody
        active.sendall(b"ping\n")
        assert Lines(active).readline() == "ping"
        idle.sendall(b"ne\n")
        assert Lines(idle).readline() == "half a line"


def test_tcp_echo_survives_client_disconnects(procs) -> None:
    server = procs.server("tcp_echo.py", "--port", "0")
    with connect(server) as sock:
        sock.sendall(b"unfinished")
    with connect(server) as sock:  # abortive close: the server sees a reset
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(b"x" * 1000 + b"\n")
    result = run("tcp_echo.py", "client", "--port", str(server.port), "still alive")
    assert result.stdout == b"still alive\n"
    assert "Traceback" not in server.stderr()


def test_tcp_echo_caps_line_length(procs) -> None:
    server = procs.server("tcp_echo.py", "--port", "0", "--max-line", "1000")
    with connect(server) as sock:
        sock.sendall(b"ok\n" + b"y" * 5000)
        assert recv_all(sock) == b"ok\nerror: line longer than 1000 bytes\n"


def test_tcp_echo_unix_socket(procs, tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    server = procs.server("tcp_echo.py", "--unix", str(path), "--upper")
    assert server.address == f"unix:{path}"
    result = run("tcp_echo.py", "client", "--unix", str(path), "over af_unix")
    assert result.stdout == b"OVER AF_UNIX\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(str(path))
        sock.sendall(b"raw\nbytes")
        sock.shutdown(socket.SHUT_WR)
        assert recv_all(sock) == b"RAW\nBYTES"
    assert server.stop() == 0
    assert not path.exists()  # the server removes its socket file


# -- udp_echo ------------------------------------------------------------------
def test_udp_echo_client(procs) -> None:
    server = procs.server("udp_echo.py", "--port", "0")
    result = run("udp_echo.py", "client", "--port", str(server.port), "one", "two words")
    assert result.returncode == 0
    out = result.stdout.decode()
    assert "echo #1: one\necho #2: two words\n" in out
    assert "summary: 2 sent, 2 echoed, 0 lost, 0 retries" in out


def test_udp_keeps_message_boundaries(procs) -> None:
    server = procs.server("udp_echo.py", "--port", "0")
    datagrams = [b"a", b"bb", os.urandom(3000), b"last"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        for datagram in datagrams:  # fire them all off before reading anything
            sock.sendto(datagram, (server.host, server.port))
        # Each recvfrom() returns exactly one whole datagram, never two glued.
        received = [sock.recvfrom(65535) for _ in datagrams]
    assert sorted(data for data, _ in received) == sorted(datagrams)
    assert {addr for _, addr in received} == {(server.host, server.port)}


def test_udp_retries_after_simulated_loss(procs) -> None:
    server = procs.server("udp_echo.py", "--port", "0", "--drop-every", "2")
    result = run(
        "udp_echo.py", "client", "--port", str(server.port), "--timeout", "0.5",
        "--retries", "3", "a", "b", "c", "d",
    )  # fmt: skip
    out = result.stdout.decode()
    assert result.returncode == 0, out
    assert "retrying" in out
    assert [line for line in out.splitlines() if line.startswith("echo")] == [
        "echo #1: a", "echo #2: b", "echo #3: c", "echo #4: d",
    ]  # fmt: skip
    assert re.search(r"summary: 4 sent, 4 echoed, 0 lost, [1-9]\d* retries", out)
    assert "DROPPED (simulated)" in server.stderr()


def test_udp_reports_lost_datagrams(procs) -> None:
    server = procs.server("udp_echo.py", "--port", "0", "--drop-every", "1")
    args = ("--port", str(server.port), "--timeout", "0.2", "--retries", "1", "x", "y")
    result = run("udp_echo.py", "client", *args)
    out = result.stdout.decode()
    assert result.returncode == 1
    assert "lost #1 after 2 attempts" in out and "lost #2 after 2 attempts" in out
    assert "summary: 2 sent, 0 echoed, 2 lost" in out


# -- chat ------------------------------------------------------------------------
def join(server) -> tuple[Lines, str]:
    user = Lines(connect(server))
    match, _ = user.expect(r"\* welcome (\S+); .*")
    return user, match[1]


def test_chat_broadcast_nick_who_quit(procs) -> None:
    server = procs.server("chat.py", "--port", "0")
    a, a_name = join(server)
    b, b_name = join(server)
    a.expect(rf"\* {b_name} joined")

    a.send("hello\n")  # nc sends LF
    b.expect(rf"<{a_name}> hello")
    b.send("hi there\r\n")  # telnet sends CRLF
    a.expect(rf"<{b_name}> hi there")

    a.send("/nick alice\n")
    a.expect(r"\* you are now alice")
    b.expect(rf"\* {a_name} is now known as alice")
    b.send("/nick alice\n")
    b.expect(r"\* nick alice is taken")
    a.send("said by alice\n/who\n")
    b.expect(r"<alice> said by alice")
    _, skipped = a.expect(rf"\* in the room: alice, {b_name}")
    assert not any("said by alice" in line for line in skipped)  # no echo to the sender

    b.send("/bogus\n")
    b.expect(r"\* unknown command /bogus.*")
    a.send("/quit\n")
    a.expect(r"\* bye")
    assert a.readline() is None  # the server closed the connection
    b.expect(r"\* alice left")
    a.sock.close()
    b.sock.close()


def test_chat_sanitizes_and_caps_lines(procs) -> None:
    server = procs.server("chat.py", "--port", "0", "--max-line", "100")
    a, a_name = join(server)
    b, _ = join(server)
    a.send("\x1b[2Jcolou\x07r\n")
    b.expect(rf"<{a_name}> \[2Jcolour")  # escape and bell characters removed
    a.send("z" * 500 + "\n")
    a.expect(r"\* line longer than 100 bytes; goodbye")
    assert a.readline() is None
    b.expect(rf"\* {a_name} left")
    a.sock.close()
    b.sock.close()


def test_chat_drops_a_client_that_cannot_keep_up(procs) -> None:
    server = procs.server("chat.py", "--port", "0", "--queue-size", "10")
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect((server.host, server.port))  # ...and never reads
    reader, _ = join(server)
    talker, talker_name = join(server)
    slow_name = "guest1"
    line, batch, dropped = "x" * 1000 + "\n", 50, False
    for _ in range(400):  # at most 20 MB; a few MB fill the kernel buffers on loopback
        talker.send(line * batch)
        got = 0
        while got < batch:
            text = reader.readline()
            assert text is not None
            got += text.startswith(f"<{talker_name}> ")
            dropped |= text.startswith(f"* {slow_name} was disconnected (too slow)")
        if dropped:
            break
    assert dropped, "the slow client was never dropped"
    talker.send("the room still works\n")
    reader.expect(rf"<{talker_name}> the room still works")
    talker.send("/who\n")
    talker.expect(r"\* in the room: guest2, guest3")  # guest1 was the slow one
    for sock in (slow, reader.sock, talker.sock):
        sock.close()


def test_chat_bot_answers_lines_addressed_to_it(procs) -> None:
    server = procs.server("chat.py", "--port", "0")
    user, name = join(server)
    procs.spawn("chat.py", "bot", "--port", str(server.port), stdin=subprocess.DEVNULL)
    user.expect(r"\* guest\d+ is now known as bot")
    user.send("bot: echo hi there\n")
    user.expect(rf"<bot> {name}: hi there")
    user.send("robot: echo not for the bot\nhey bot: help\n")
    match, _ = user.expect(rf"<bot> {name}: (.*)")
    assert match[1] == "I know: time, echo TEXT, help"  # and nothing for the robot line
    user.send("bot: time\n")
    user.expect(rf"<bot> {name}: it is \d\d:\d\d:\d\d.*")
    user.sock.close()


def test_chat_interactive_client(procs) -> None:
    server = procs.server("chat.py", "--port", "0")
    watcher, _ = join(server)
    result = run("chat.py", "client", "--port", str(server.port), input=b"hello from a client\n")
    assert result.returncode == 0
    out = result.stdout.decode()
    assert out.startswith("* welcome guest2;") and out.endswith("* bye\n")
    watcher.expect(r"<guest2> hello from a client")
    watcher.expect(r"\* guest2 left")
    watcher.sock.close()


# -- framed_transfer -------------------------------------------------------------
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def shared(procs, tmp_path: Path):
    root = tmp_path / "shared"
    root.mkdir()
    return procs.server("framed_transfer.py", "--port", "0", "--root", str(root)), root


def ft_client(server, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run("framed_transfer.py", "client", "--port", str(server.port), *args)


def test_framed_upload_and_download_multi_mib(shared, tmp_path: Path) -> None:
    server, root = shared
    original = tmp_path / "random.bin"
    original.write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    up = ft_client(server, "upload", str(original))
    assert up.returncode == 0, up.stderr
    assert sha256(root / "random.bin") == sha256(original)
    copy = tmp_path / "copy.bin"
    down = ft_client(server, "download", "random.bin", "-o", str(copy))
    assert down.returncode == 0, down.stderr
    assert sha256(copy) == sha256(original)
    assert sorted(p.name for p in root.iterdir()) == ["random.bin"]
    assert not copy.with_name("copy.bin.part").exists()


def test_framed_resumes_interrupted_upload(shared, tmp_path: Path) -> None:
    server, root = shared
    original = tmp_path / "big.bin"
    original.write_bytes(os.urandom(2 * 1024 * 1024))
    first = ft_client(server, "upload", str(original), "--stop-after", "1000000")
    assert first.returncode == 3
    assert b"simulated interruption" in first.stdout
    assert not (root / "big.bin").exists()  # nothing under the final name yet
    assert (root / ".big.bin.part").exists()
    second = ft_client(server, "upload", str(original))
    assert second.returncode == 0, second.stderr
    # Only whole frames were kept: 15 frames of 64 KiB made it before the cut.
    assert b"resumed from 983040," in second.stdout
    assert sha256(root / "big.bin") == sha256(original)
    assert not (root / ".big.bin.part").exists()


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "x\\y", "tab\there"])
def test_framed_refuses_unsafe_names(shared, tmp_path: Path, name: str) -> None:
    server, root = shared
    source = tmp_path / "payload.txt"
    source.write_bytes(b"not allowed here")
    up = ft_client(server, "upload", str(source), "--name", name)
    assert up.returncode == 2
    assert b"only a plain base name is allowed" in up.stderr
    down = ft_client(server, "download", name, "-o", str(tmp_path / "out"))
    assert down.returncode == 2
    assert list(root.iterdir()) == []
    assert not (tmp_path / "evil").exists()


def test_framed_rejects_bad_checksum_and_oversized_frames(shared) -> None:
    server, root = shared
    ft = load_example("framed_transfer")
    data = b"some data"
    with connect(server) as sock:
        request = {"name": "f.txt", "size": len(data), "sha256": "0" * 64}
        ft.send_json(sock, ft.Kind.UPLOAD, request)
        assert ft.recv_json(sock, ft.Kind.OFFSET)[1] == {"offset": 0}
        ft.send_frame(sock, ft.Kind.DATA, data)
        kind, reply = ft.recv_json(sock, ft.Kind.DONE, ft.Kind.ERROR)
        assert kind == ft.Kind.ERROR and "does not match" in reply["error"]
        assert list(root.iterdir()) == []  # neither the file nor its .part
        # A header announcing a 2 GiB payload is refused before anything is read.
        sock.sendall(ft.HEADER.pack(ft.MAGIC, ft.Kind.DATA, 2**31, bytes(32)))
        assert sock.recv(100) == b""  # the server hung up
    assert "exceeds the cap" in server.stderr()


def test_framed_naive_demo_shows_sticky_packets() -> None:
    result = run("framed_transfer.py", "naive")
    assert result.returncode == 0
    out = result.stdout.decode()
    assert re.search(r"recv\(1024\): \d+ reads, .*boundaries LOST", out)
    assert "recv_frame(): 3 reads, sizes [9, 5, 5000]: intact" in out


# -- remote_command ----------------------------------------------------------------
@pytest.fixture
def commands(procs):
    return procs.server(
        "remote_command.py", "--port", "0", "--timeout", "1", "--max-output", "100000",
        "--allow", "echo=/bin/echo", "--allow", "sleep=/bin/sleep",
        "--allow", "yes=/usr/bin/yes", "--allow", "env=/usr/bin/env",
        env={"REMOTE_COMMAND_TOKEN": TOKEN},
    )  # fmt: skip


def remote(server, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[bytes]:
    client_args = ("client", "--port", str(server.port), *args)
    return run("remote_command.py", *client_args, env={"REMOTE_COMMAND_TOKEN": token})


def test_remote_command_passes_arguments_literally(commands, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.write_text("still here")
    args = ["hello; rm -rf /", f"$(rm {canary})", "`id`", "|", "cat", "&&", "-n"]
    result = remote(commands, "echo", *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == " ".join(args) + "\n"
    assert canary.exists()
    assert b"exit code 0" in result.stderr


def test_remote_command_refuses_unknown_command(commands) -> None:
    result = remote(commands, "rm", "-rf", "/")
    assert result.returncode == 2
    assert b"refused: command not allowed: 'rm'" in result.stderr
    assert result.stdout == b""


def test_remote_command_refuses_wrong_token(commands) -> None:
    result = remote(commands, "echo", "hi", token="wrong")
    assert result.returncode == 2
    assert b"refused: authentication failed" in result.stderr
    assert result.stdout == b""
    via_option = run("remote_command.py", "client", "--port", str(commands.port), "--token",
                     TOKEN, "echo", "hi")  # fmt: skip
    assert via_option.stdout == b"hi\n"


def test_remote_command_kills_on_timeout(commands) -> None:
    result = remote(commands, "sleep", "30")  # the server's timeout is 1 s
    assert result.returncode == 124
    assert b"timed out after 1.0 s; the command was killed" in result.stderr


def test_remote_command_truncates_output(commands) -> None:
    result = remote(commands, "yes", "spam")
    assert result.stdout == (b"spam\n" * 20000)[:100000]
    assert b"output truncated after 100000 bytes" in result.stderr


def test_remote_command_does_not_leak_environment(commands) -> None:
    result = remote(commands, "env")
    assert result.returncode == 0
    assert TOKEN.encode() not in result.stdout


def test_remote_command_allow_file_and_token_required(procs, tmp_path: Path) -> None:
    allow = tmp_path / "allow.json"
    allow.write_text(json.dumps({"say": "/bin/echo"}))
    env = {"REMOTE_COMMAND_TOKEN": ""}
    no_token = run(
        "remote_command.py", "server", "--port", "0", "--allow-file", str(allow), env=env
    )
    assert no_token.returncode == 2
    assert b"a token is required" in no_token.stderr
    server = procs.server("remote_command.py", "--port", "0", "--allow-file", str(allow),
                          "--token", "t0k")  # fmt: skip
    result = remote(server, "say", "from", "a file", token="t0k")
    assert result.stdout == b"from a file\n"


def test_remote_command_shutdown_kills_running_command(procs) -> None:
    server = procs.server("remote_command.py", "--port", "0", "--allow", "sh=/bin/sh",
                          "--token", TOKEN)  # fmt: skip
    client, _ = procs.spawn(
        "remote_command.py", "client", "--port", str(server.port), "--token", TOKEN,
        "sh", "-c", "echo started; exec sleep 30",
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert procs.read_line(client.stdout, TIMEOUT) == "started"
    assert server.stop() == 0
    assert client.wait(timeout=TIMEOUT) != 0
    assert "Traceback" not in server.stderr()


# -- embed_server ------------------------------------------------------------------
def test_embed_server_round_trip_and_private_trees(procs, tmp_path: Path) -> None:
    server = procs.server(
        "embed_server.py", "--port", "0", "--login", "ann:pw1", "--login", "bo:pw2"
    )
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(300_000))
    result = run(
        "embed_server.py", "client", "--port", str(server.port), "--user", "ann:pw1", str(payload)
    )
    assert result.returncode == 0, result.stderr
    assert b"payload.bin: 300000 bytes up and down, same bytes" in result.stdout
    with ftplib.FTP() as ftp:
        ftp.connect(server.host, server.port, timeout=TIMEOUT)
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            ftp.login("ann", "wrong")
        ftp.login("ann", "pw1")
        chunks: list[bytes] = []
        ftp.retrbinary("RETR payload.bin", chunks.append)
        digest = hashlib.sha256(b"".join(chunks)).hexdigest()
        assert digest == hashlib.sha256(payload.read_bytes()).hexdigest()
    with ftplib.FTP() as ftp:  # another user sees an empty tree of their own
        ftp.connect(server.host, server.port, timeout=TIMEOUT)
        ftp.login("bo", "pw2")
        assert ftp.nlst() == []


# -- every server ------------------------------------------------------------------
SERVERS = {
    "tcp_echo.py": [],
    "udp_echo.py": [],
    "chat.py": [],
    "framed_transfer.py": [],
    "remote_command.py": ["--token", TOKEN, "--allow", "echo=/bin/echo"],
    "embed_server.py": [],
}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
@pytest.mark.parametrize("script", list(SERVERS))
def test_servers_stop_cleanly_on_signal(procs, script: str, sig: int) -> None:
    server = procs.server(script, "--port", "0", *SERVERS[script])
    assert re.fullmatch(r"127\.0\.0\.1:[1-9]\d*", server.address)
    if script != "udp_echo.py":  # with a client connected, too
        with connect(server) as sock:
            sock.sendall(b"/nick x\n" if script == "chat.py" else b"")
            assert server.stop(sig) == 0
    else:
        assert server.stop(sig) == 0
    stderr = server.stderr()
    assert "Traceback" not in stderr and "Exception" not in stderr, stderr
