"""An upload the server refuses half-way (quota, disk full) ends at once, with the
server's reason and exit status 5: never a wait for the network timeout.

The client's timeout is set far above what any of these tests may take, so a
client that waits for it makes the test fail by its own (generous) bound, and
the message must be the server's refusal, not a timeout.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from clientkit import Server, make_ca, run_cli, sha256
from scripted import Control, Handler, ScriptedServer, reply

import fileferry
from fileferry import config
from fileferry.client.errors import ConnectionFailed, RemoteError
from fileferry.config.model import UserConfig
from fileferry.server.thread import ServerThread
from fileferry.users.passwords import hash_password

#: Far above the bound each test runs under: reaching it is the bug.
LONG_TIMEOUT = 120
#: What a test may take at most; a client that waits for its timeout fails here.
BOUND = 60
QUOTA = 1_000_000


def _serve_with_quota(root: Path, **settings: object) -> ServerThread:
    alice = UserConfig(
        name="alice",
        password_hash=hash_password("secret"),
        account_fields=(("quota_bytes", QUOTA),),
    )
    cfg = config.build(
        {
            "root": str(root),
            "port": 0,
            "login_failure_delay": 0,
            "idle_timeout": 60,
            "data_timeout": 60,
            "users": (alice,),
            **settings,
        }
    )
    return ServerThread(cfg)


@pytest.fixture
def quota_server(tmp_path: Path) -> Iterator[Server]:
    """fileferry with alice:secret limited to QUOTA bytes."""
    root = tmp_path / "qroot"
    root.mkdir()
    with _serve_with_quota(root) as server:
        host, port = server.address
        yield Server(f"ftp://alice@{host}:{port}", root, "alice", "secret")


def test_put_over_quota_over_tls_exits_5_at_once(tmp_path: Path) -> None:
    ca, cert, key = make_ca(tmp_path)
    root = tmp_path / "qroot"
    root.mkdir()
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(5 * QUOTA))
    tls = {"tls_cert": str(cert), "tls_key": str(key), "tls_required": True}
    with _serve_with_quota(root, **tls) as server:
        host, port = server.address
        done = run_cli(
            "put",
            "-q",
            "--ca-file",
            str(ca),
            "--timeout",
            str(LONG_TIMEOUT),
            str(big),
            f"ftps://alice@{host}:{port}/big.bin",
            env={"FILEFERRY_PASSWORD": "secret"},
            timeout=BOUND,
        )
    assert done.returncode == 5, done.stderr
    assert "552" in done.stderr
    assert not (root / "big.bin").exists()


def test_put_over_quota_exits_5_at_once(quota_server: Server, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(5 * QUOTA))
    done = run_cli(
        "put",
        "-q",
        "--timeout",
        str(LONG_TIMEOUT),
        str(big),
        quota_server.at("big.bin"),
        env=quota_server.env,
        timeout=BOUND,
    )
    assert done.returncode == 5, done.stderr
    assert "552" in done.stderr
    assert "in time" not in done.stderr and "stalled" not in done.stderr
    assert not (quota_server.root / "big.bin").exists()


def test_after_a_refusal_the_same_client_goes_on(quota_server: Server, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * QUOTA))
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(10_000))

    async def scenario() -> None:
        async with fileferry.connect(
            quota_server.url, password="secret", timeout=LONG_TIMEOUT
        ) as ftp:
            with pytest.raises(RemoteError) as refused:
                await ftp.upload(big, "big.bin")
            assert refused.value.code == 552
            # The connection that was refused is still in step with the server.
            result = await ftp.upload(small, "small.bin")
            assert result.verified_by is not None

    asyncio.run(asyncio.wait_for(scenario(), BOUND))
    assert sha256(quota_server.root / "small.bin") == sha256(small)
    assert not (quota_server.root / "big.bin").exists()


# --- servers that stop reading: the refusal arrives while the client still sends -----


def _refusing_stor(
    keep_data_open: bool, received: list[int], left_open: list[asyncio.StreamWriter]
) -> dict[str, Handler]:
    """STOR reads a little, answers 552 and then either leaves the data connection
    open without reading another byte, or resets it (both are seen in the wild)."""

    async def pasv(ctl: Control, arg: str) -> None:
        port = await ctl.listen()
        await ctl.send(f"227 Entering Passive Mode (127,0,0,1,{port >> 8},{port & 255}).\r\n")

    async def stor(ctl: Control, arg: str) -> None:
        reader, writer = await ctl.data_connection()
        await ctl.send("150 send it\r\n")
        got = 0
        while got < 100_000:
            chunk = await reader.read(65536)
            if not chunk:
                break
            got += len(chunk)
        received.append(got)
        await ctl.send("552 Quota exceeded.\r\n")
        if keep_data_open:
            # Not another byte is read, and the connection stays open until the
            # test is over: only the client can end this.
            left_open.append(writer)
        else:
            writer.transport.abort()

    return {"PASV": pasv, "STOR": stor, "SIZE": reply("550 no such file")}


@pytest.mark.parametrize("keep_data_open", [True, False], ids=["stalled", "reset"])
def test_a_refusal_while_sending_stops_the_upload(tmp_path: Path, keep_data_open: bool) -> None:
    # Far more than any socket buffers hold, so the client is still sending.
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(64 << 20))
    received: list[int] = []
    left_open: list[asyncio.StreamWriter] = []

    async def scenario() -> RemoteError:
        async with (
            ScriptedServer(_refusing_stor(keep_data_open, received, left_open)) as server,
            fileferry.connect(server.url, password="pw", timeout=LONG_TIMEOUT) as ftp,
        ):
            with pytest.raises(RemoteError) as refused:
                await ftp.upload(source, "big.bin")
            # In step still: the next command gets its own answer.
            assert (await ftp.exists("big.bin")) is False
            for writer in left_open:
                writer.transport.abort()
            return refused.value

    error = asyncio.run(asyncio.wait_for(scenario(), BOUND))
    assert error.code == 552
    assert "Quota exceeded" in str(error)
    assert received and received[0] >= 1


def test_a_download_the_server_breaks_off_reports_its_reply_at_once(tmp_path: Path) -> None:
    """The same trap on the way in: 451 after half a file must not be followed by a
    wait for a second reply that never comes."""

    async def pasv(ctl: Control, arg: str) -> None:
        port = await ctl.listen()
        await ctl.send(f"227 Entering Passive Mode (127,0,0,1,{port >> 8},{port & 255}).\r\n")

    async def retr(ctl: Control, arg: str) -> None:
        _, writer = await ctl.data_connection()
        await ctl.send("150 here it comes\r\n")
        writer.write(b"x" * 50_000)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await ctl.send("451 Local error: read failed.\r\n")

    handlers = {"PASV": pasv, "RETR": retr, "SIZE": reply("213 100000")}

    async def scenario() -> RemoteError:
        async with (
            ScriptedServer(handlers) as server,
            fileferry.connect(server.url, password="pw", timeout=LONG_TIMEOUT) as ftp,
        ):
            with pytest.raises(RemoteError) as refused:
                await ftp.download("f.bin", tmp_path / "f.bin")
            assert (await ftp.exists("f.bin")) is True  # in step: SIZE answers
            return refused.value

    error = asyncio.run(asyncio.wait_for(scenario(), BOUND))
    assert error.code == 451
    assert not (tmp_path / "f.bin").exists()


def test_a_server_that_hangs_up_while_the_client_sends_ends_the_upload(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(64 << 20))
    left_open: list[asyncio.StreamWriter] = []

    async def pasv(ctl: Control, arg: str) -> None:
        port = await ctl.listen()
        await ctl.send(f"227 Entering Passive Mode (127,0,0,1,{port >> 8},{port & 255}).\r\n")

    async def stor(ctl: Control, arg: str) -> None:
        reader, writer = await ctl.data_connection()
        await ctl.send("150 send it\r\n")
        await reader.read(65536)
        left_open.append(writer)  # never read again, never closed by the server
        ctl.writer.transport.abort()

    handlers = {"PASV": pasv, "STOR": stor, "SIZE": reply("550 no such file")}

    async def scenario() -> ConnectionFailed:
        async with (
            ScriptedServer(handlers) as server,
            fileferry.connect(server.url, password="pw", timeout=LONG_TIMEOUT) as ftp,
        ):
            with pytest.raises(ConnectionFailed) as lost:
                await ftp.upload(source, "big.bin")
            for writer in left_open:
                writer.transport.abort()
            return lost.value

    error = asyncio.run(asyncio.wait_for(scenario(), BOUND))
    assert "closed the connection" in str(error) or "lost the connection" in str(error)
