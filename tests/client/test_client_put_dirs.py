"""``fileferry put`` into folders that do not exist yet: made on the way, as mirror does
(curl's ``--ftp-create-dirs``), unless ``--no-create-dirs`` says otherwise."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from clientkit import Server, run_cli, sha256
from scripted import Control, Handler, ScriptedServer, reply

from fileferry.cli import main


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    out = []
    for name in ("one.bin", "two.bin"):
        p = tmp_path / name
        p.write_bytes(os.urandom(30_000))
        out.append(p)
    return out


@pytest.mark.parametrize("server", ["ffserver", "pyserver"])
def test_put_makes_missing_folders(
    server: str, files: list[Path], request: pytest.FixtureRequest
) -> None:
    srv: Server = request.getfixturevalue(server)
    one, two = files
    # A file name under folders that are not there.
    done = run_cli("put", "-q", str(one), srv.at("a/b/c/renamed.bin"), env=srv.env)
    assert done.returncode == 0, done.stderr
    assert sha256(srv.root / "a" / "b" / "c" / "renamed.bin") == sha256(one)
    # A folder URL (trailing slash), part of it there already.
    done = run_cli("put", "-q", str(one), str(two), srv.at("a/b/d/e/"), env=srv.env)
    assert done.returncode == 0, done.stderr
    assert sha256(srv.root / "a" / "b" / "d" / "e" / "two.bin") == sha256(two)
    # Into a folder that exists: nothing to make, nothing in the way.
    done = run_cli("put", "-q", str(two), srv.at("a/b/c/"), env=srv.env)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (srv.root / "a" / "b" / "c").iterdir()) == [
        "renamed.bin",
        "two.bin",
    ]


def test_no_create_dirs_refuses_a_missing_folder(ffserver: Server, files: list[Path]) -> None:
    done = run_cli(
        "put",
        "-q",
        "--no-create-dirs",
        str(files[0]),
        ffserver.at("nowhere/x.bin"),
        env=ffserver.env,
    )
    assert done.returncode == 5, done.stderr
    assert "550" in done.stderr
    assert not (ffserver.root / "nowhere").exists()


def test_a_file_in_the_way_is_the_servers_refusal(ffserver: Server, files: list[Path]) -> None:
    (ffserver.root / "plain").write_bytes(b"not a folder")
    done = run_cli("put", "-q", str(files[0]), ffserver.at("plain/x.bin"), env=ffserver.env)
    assert done.returncode == 5, done.stderr
    assert (ffserver.root / "plain").read_bytes() == b"not a folder"


def test_put_help_says_what_it_does() -> None:
    done = run_cli("put", "--help")
    assert done.returncode == 0
    assert "--no-create-dirs" in done.stdout


def test_a_drop_box_that_cannot_be_looked_at_still_takes_the_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload-only folder (no listing, no CWD, no MKD) as anonymous drop boxes are:
    making folders is a help, never a reason to refuse what the server would take."""
    payload = os.urandom(20_000)
    source = tmp_path / "f.bin"
    source.write_bytes(payload)
    stored: dict[str, bytes] = {}

    async def pasv(ctl: Control, arg: str) -> None:
        port = await ctl.listen()
        await ctl.send(f"227 Entering Passive Mode (127,0,0,1,{port >> 8},{port & 255}).\r\n")

    async def stor(ctl: Control, arg: str) -> None:
        reader, writer = await ctl.data_connection()
        await ctl.send("150 go ahead\r\n")
        data = await reader.read()
        writer.close()
        stored[arg] = data
        await ctl.send("226 stored\r\n")

    async def size(ctl: Control, arg: str) -> None:
        if arg in stored:
            await ctl.send(f"213 {len(stored[arg])}\r\n")
        else:
            await ctl.send("550 Permission denied.\r\n")

    handlers: dict[str, Handler] = {
        "PASV": pasv,
        "STOR": stor,
        "SIZE": size,
        "PWD": reply('257 "/"'),
        "CWD": reply("550 Permission denied."),
        "MKD": reply("550 Permission denied."),
        "MDTM": reply("550 Permission denied."),
    }
    monkeypatch.setenv("FILEFERRY_PASSWORD", "pw")

    async def scenario() -> int:
        async with ScriptedServer(handlers) as server:
            return await asyncio.to_thread(main, ["put", "-q", str(source), server.url + "drop/"])

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == 0
    assert stored == {"drop/f.bin": payload}


def test_put_preserve_keeps_the_time(ffserver: Server, files: list[Path]) -> None:
    os.utime(files[0], (1_600_000_000.5, 1_600_000_000.5))
    done = run_cli("put", "-p", str(files[0]), ffserver.at("kept.bin"), env=ffserver.env)
    assert done.returncode == 0, done.stderr
    assert "MFMT" not in done.stderr
    assert (ffserver.root / "kept.bin").stat().st_mtime == 1_600_000_000


def test_get_makes_missing_local_folders(ffserver: Server, tmp_path: Path) -> None:
    (ffserver.root / "r.bin").write_bytes(b"r" * 1000)
    into = tmp_path / "new" / "deeper"
    done = run_cli("get", "-q", ffserver.at("r.bin"), f"{into}/", env=ffserver.env)
    assert done.returncode == 0, done.stderr
    assert (into / "r.bin").read_bytes() == b"r" * 1000
    named = tmp_path / "other" / "named.bin"
    done = run_cli("get", "-q", ffserver.at("r.bin"), str(named), env=ffserver.env)
    assert done.returncode == 0, done.stderr
    assert named.read_bytes() == b"r" * 1000
    refused = tmp_path / "none" / "x.bin"
    done = run_cli(
        "get", "-q", "--no-create-dirs", ffserver.at("r.bin"), str(refused), env=ffserver.env
    )
    assert done.returncode == 6, done.stderr
    assert not refused.parent.exists()
