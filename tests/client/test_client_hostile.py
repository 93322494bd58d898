"""The client against servers that lie or babble: passive addresses, active-mode
intruders, replies that are not FTP. Each is a real socket and the real client."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from pathlib import Path

import pytest
from clientkit import Server, sha256
from scripted import Control, Handler, ScriptedServer, reply

import fileferry
from fileferry.client.errors import ExitCode, ProtocolFailure, RemoteError
from fileferry.protocol.addresses import HostPort, parse_eprt

PAYLOAD = os.urandom(200_000)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def _connect(url: str, **kw):
    return fileferry.connect(url, password="pw", timeout=5, **kw)


async def _send_payload(ctl: Control, writer: asyncio.StreamWriter) -> None:
    await ctl.send("150 here it comes\r\n")
    writer.write(PAYLOAD)
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    await ctl.send("226 done\r\n")


SIZE = reply(f"213 {len(PAYLOAD)}")


def passive_download(
    announced: str, answer: str = "227 Entering Passive Mode ({}).\r\n"
) -> dict[str, Handler]:
    """PASV listens on 127.0.0.1 but announces the host ``announced`` (h1,h2,h3,h4)
    in ``answer``, and RETR sends the payload over the data connection that arrives."""

    async def pasv(ctl: Control, arg: str) -> None:
        port = await ctl.listen()
        await ctl.send(answer.format(f"{announced},{port >> 8},{port & 255}"))

    async def retr(ctl: Control, arg: str) -> None:
        _, writer = await ctl.data_connection()
        await _send_payload(ctl, writer)

    return {"PASV": pasv, "RETR": retr, "SIZE": SIZE}


# --- passive mode --------------------------------------------------------------------------


def test_the_announced_passive_address_is_not_followed(tmp_path: Path):
    """A server (NATed or hostile) names 192.0.2.1 in its 227: the client goes to the
    control connection's peer instead, and the transfer works."""
    handlers = {**passive_download("192,0,2,1"), "EPSV": reply("502 no EPSV")}

    async def go() -> tuple[fileferry.client.TransferResult, list[str], list[str]]:
        async with ScriptedServer(handlers) as server:
            async with _connect(server.url) as ftp:
                result = await ftp.download("f.bin", tmp_path / "f.bin")
            return result, server.controls[0].data_peers, server.commands

    result, peers, commands = run(go())
    assert peers == ["127.0.0.1"]
    assert "PASV" in commands
    assert result.verified_by == "size"
    assert sha256(tmp_path / "f.bin") == hashlib.sha256(PAYLOAD).hexdigest()


def test_an_unreadable_229_falls_back_to_pasv(tmp_path: Path):
    handlers = {
        **passive_download("127,0,0,1"),
        "EPSV": reply("229 Entering Extended Passive Mode (|||70000|)"),
    }

    async def go() -> list[str]:
        async with ScriptedServer(handlers) as server:
            async with _connect(server.url) as ftp:
                await ftp.download("f.bin", tmp_path / "f.bin")
            return server.commands

    commands = run(go())
    assert commands.index("EPSV") < commands.index("PASV") < commands.index("RETR f.bin")
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_a_multi_line_227_is_read_whole(tmp_path: Path):
    answer = "227-Entering Passive Mode\r\n ({})\r\n227 Enjoy.\r\n"
    handlers = {**passive_download("127,0,0,1", answer), "EPSV": reply("502 no")}

    async def go() -> None:
        async with ScriptedServer(handlers) as server, _connect(server.url) as ftp:
            await ftp.download("f.bin", tmp_path / "f.bin")

    run(go())
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


@pytest.mark.parametrize(
    "answer",
    [
        "227 Entering Passive Mode (127,0,0,1,999,1).",
        "227 Entering Passive Mode (127,0,0,1,0,0).",
        "227 Entering Passive Mode.",
    ],
)
def test_a_broken_227_is_a_protocol_failure(tmp_path: Path, answer: str):
    handlers = {"EPSV": reply("500 what"), "PASV": reply(answer), "SIZE": SIZE}

    async def go() -> None:
        async with ScriptedServer(handlers) as server, _connect(server.url) as ftp:
            await ftp.download("f.bin", tmp_path / "f.bin")

    with pytest.raises(ProtocolFailure, match="cannot understand the PASV reply"):
        run(go())


# --- active mode ---------------------------------------------------------------------------


def test_active_mode_takes_only_the_servers_connection(tmp_path: Path):
    """Someone else (127.0.0.2) connects to the client's port first: RFC 2577 says
    refuse it. The client hangs up on it and takes the server's data instead."""
    target: list[HostPort] = []
    intruder_read: list[bytes] = []

    async def eprt(ctl: Control, arg: str) -> None:
        target.append(parse_eprt(arg))
        await ctl.send("200 EPRT ok\r\n")

    async def retr(ctl: Control, arg: str) -> None:
        (where,) = target
        await ctl.send("150 connecting\r\n")
        reader, writer = await asyncio.open_connection(
            where.host, where.port, local_addr=("127.0.0.2", 0)
        )
        writer.write(b"EVIL")
        try:
            async with asyncio.timeout(10):
                intruder_read.append(await reader.read())  # b"": the client hung up
        except ConnectionResetError:
            intruder_read.append(b"")
        writer.close()
        _, good = await asyncio.open_connection(where.host, where.port, local_addr=("127.0.0.1", 0))
        good.write(PAYLOAD)
        await good.drain()
        good.close()
        await good.wait_closed()
        await ctl.send("226 done\r\n")

    handlers = {"EPRT": eprt, "RETR": retr, "SIZE": SIZE}

    async def go() -> None:
        async with ScriptedServer(handlers) as server, _connect(server.url, active=True) as ftp:
            await ftp.download("f.bin", tmp_path / "f.bin")

    run(go())
    assert target[0].host == "127.0.0.1"
    assert intruder_read == [b""]
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def _mapped(server: Server) -> tuple[str, str]:
    """The server's URL with its IPv4 address spelled IPv4-mapped IPv6, and the
    folder of the URL (API paths are relative to the login folder, not the URL)."""
    url, _, folder = server.url.partition("://")[2].partition("/")
    return "ftp://" + url.replace("@127.0.0.1:", "@[::ffff:127.0.0.1]:") + "/", folder


@pytest.mark.parametrize("which", ["ffserver", "pyserver"])
def test_active_mode_over_an_ipv4_mapped_control_connection(
    request: pytest.FixtureRequest, tmp_path: Path, which: str
):
    """The control socket is IPv6 with a mapped address, the server's is IPv4: the
    EPRT goes as |1| (pyftpdlib answers 522 to |2| on an IPv4 socket) and the
    server's data connection is matched to the peer as an address, not as text."""
    server: Server = request.getfixturevalue(which)
    url, folder = _mapped(server)
    remote = f"{folder}/a.bin" if folder else "a.bin"
    src = tmp_path / "a.bin"
    src.write_bytes(PAYLOAD)

    async def go() -> list[str]:
        async with fileferry.connect(url, password=server.password, active=True, timeout=10) as ftp:
            await ftp.upload(src, remote)
            await ftp.download(remote, tmp_path / "b.bin")
            return [e.name for e in await ftp.list(folder)]

    assert run(go()) == ["a.bin"]
    assert sha256(tmp_path / "b.bin") == sha256(src)
    assert sha256(server.root / "a.bin") == sha256(src)


# --- replies that are not FTP ---------------------------------------------------------------


@pytest.mark.parametrize(
    "greeting",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 400 Bad Request\r\n",
        b"\xff\xfb\x01\r\n",
        b"220-welcome\r\n" + b"x" * 80_000,
    ],
)
def test_a_greeting_that_is_not_ftp(greeting: bytes):
    async def go() -> None:
        async with ScriptedServer({}, greeting=greeting) as server, _connect(server.url):
            pass

    with pytest.raises(ProtocolFailure) as info:
        run(go())
    assert info.value.exit_code == ExitCode.FAILURE
    assert "not FTP" in str(info.value)


def test_an_endless_reply_is_cut_off():
    """A FEAT that never ends: the client stops at its cap, not at its memory's end."""
    sent: list[int] = []

    async def feat(ctl: Control, arg: str) -> None:
        await ctl.send("211-Features:\r\n")
        line = b" " + b"F" * 1000 + b"\r\n"
        with contextlib.suppress(ConnectionError):
            for _ in range(100_000):
                await ctl.send(line)
                sent.append(len(line))

    async def go() -> None:
        async with ScriptedServer({"FEAT": feat}) as server, _connect(server.url):
            pass

    with pytest.raises(ProtocolFailure, match="reply longer than"):
        run(go())
    assert sum(sent) < 100_000 * 1002


@pytest.mark.parametrize("size", ["\u00b2", "\u0661\u0662", "-5", "12 bytes"])
def test_a_size_that_is_not_decimal_is_no_size(tmp_path: Path, size: str):
    """int() would read (or crash on) digits of other scripts: the client treats
    the size as unknown and says what went wrong in its own terms."""
    handlers = {"SIZE": reply(f"213 {size}"), "MDTM": reply("550 No such file")}

    async def go() -> None:
        async with ScriptedServer(handlers) as server, _connect(server.url) as ftp:
            await ftp.download("f.bin", tmp_path / "f.bin")

    with pytest.raises(RemoteError) as info:
        run(go())
    assert info.value.code == 550
