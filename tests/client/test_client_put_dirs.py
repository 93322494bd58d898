"""``fileferry put`` into folders that do not exist yet: made on the way, as mirror does
(curl's ``--ftp-create-dirs``), unless ``--no-create-dirs`` says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from clientkit import Server, run_cli, sha256


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
