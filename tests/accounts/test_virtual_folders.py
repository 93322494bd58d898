"""Virtual folders end to end: mounted, listed, read-only, jailed, never leaking host paths."""

from __future__ import annotations

import ftplib
import os
from pathlib import Path

import pytest
from accountkit import Serve, get, home_of, no_temp_files, put, refused_upload

from fileferry.users.base import ALL_PERMISSIONS, Account, VirtualFolder


@pytest.fixture
def tree(tmp_path: Path, homes: Path) -> dict[str, Path]:
    home = home_of(homes, "alice")
    (home / "mine.txt").write_bytes(b"mine")
    shared = tmp_path / "shared"
    (shared / "docs").mkdir(parents=True)
    (shared / "docs" / "manual.txt").write_bytes(b"read me")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_bytes(b"top secret")
    os.symlink(secret, shared / "escape")  # a symlink out of the mounted folder
    os.symlink(secret / "key.txt", inbox / "key-link.txt")
    return {"home": home, "shared": shared, "inbox": inbox, "secret": secret}


def account(tree: dict[str, Path], **fields) -> Account:
    return Account(
        "alice",
        str(tree["home"]),
        permissions=ALL_PERMISSIONS,
        virtual_folders=(
            VirtualFolder("/shared", str(tree["shared"]), read_only=True),
            VirtualFolder("/drop/inbox", str(tree["inbox"])),
        ),
        **fields,
    )


def replies_of(f: ftplib.FTP, *commands: str) -> list[str]:
    out = []
    for command in commands:
        try:
            out.append(f.sendcmd(command))
        except ftplib.Error as exc:
            out.append(str(exc))
    return out


def test_mounts_are_listed_and_readable(serve: Serve, tree: dict[str, Path]) -> None:
    f = serve(account(tree)).login("alice")
    assert sorted(f.nlst("/")) == ["drop", "mine.txt", "shared"]
    assert f.nlst("/drop") == ["inbox"]  # /drop exists only as the way to the mount
    assert sorted(f.nlst("/shared")) == ["docs"]  # the escaping symlink is not shown
    assert get(f, "/shared/docs/manual.txt") == b"read me"
    f.cwd("/shared/docs")
    assert f.pwd() == "/shared/docs"
    assert get(f, "manual.txt") == b"read me"
    f.cwd("..")
    assert f.pwd() == "/shared"
    f.quit()


def test_read_only_mount_refuses_every_change(serve: Serve, tree: dict[str, Path]) -> None:
    f = serve(account(tree)).login("alice")
    before = sorted(p.name for p in tree["shared"].rglob("*"))
    for attempt in (
        lambda: put(f, "/shared/new.txt", b"x"),
        lambda: put(f, "/shared/docs/manual.txt", b"x", "APPE"),
        lambda: f.delete("/shared/docs/manual.txt"),
        lambda: f.mkd("/shared/newdir"),
        lambda: f.rmd("/shared/docs"),
        lambda: f.rename("/shared/docs/manual.txt", "/shared/docs/m.txt"),
        lambda: f.sendcmd("MFMT 20200101000000 /shared/docs/manual.txt"),
        lambda: f.sendcmd("SITE CHMOD 600 /shared/docs/manual.txt"),
    ):
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            attempt()
    assert sorted(p.name for p in tree["shared"].rglob("*")) == before
    assert (tree["shared"] / "docs" / "manual.txt").read_bytes() == b"read me"
    f.quit()


def test_writable_mount_takes_uploads_into_its_directory(
    serve: Serve, tree: dict[str, Path]
) -> None:
    f = serve(account(tree)).login("alice")
    put(f, "/drop/inbox/scan.pdf", b"%PDF")
    assert (tree["inbox"] / "scan.pdf").read_bytes() == b"%PDF"
    f.mkd("/drop/inbox/2024")
    f.rename("/drop/inbox/scan.pdf", "/drop/inbox/2024/scan.pdf")
    assert (tree["inbox"] / "2024" / "scan.pdf").exists()
    assert not (tree["home"] / "drop").exists()  # nothing leaked into the home
    f.quit()


def test_mount_points_and_cross_mount_renames_are_refused(
    serve: Serve, tree: dict[str, Path]
) -> None:
    f = serve(account(tree)).login("alice")
    for attempt in (
        lambda: f.rename("/mine.txt", "/drop/inbox/mine.txt"),  # home -> mount
        lambda: f.rename("/drop/inbox", "/elsewhere"),  # the mount point itself
        lambda: f.rename("/drop", "/moved"),  # a folder leading to a mount
        lambda: f.rmd("/drop/inbox"),
        lambda: f.rmd("/drop"),
        lambda: f.delete("/shared"),
        lambda: put(f, "/drop", b"x"),
    ):
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            attempt()
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        f.mkd("/shared")
    assert (tree["home"] / "mine.txt").read_bytes() == b"mine"
    f.quit()


def test_paths_never_escape_a_mount_and_replies_never_show_host_paths(
    serve: Serve, tree: dict[str, Path], tmp_path: Path
) -> None:
    f = serve(account(tree)).login("alice")
    replies = replies_of(
        f,
        "CWD /shared/../..",
        "PWD",
        "SIZE /shared/../../secret/key.txt",
        "SIZE /shared/escape/key.txt",
        "SIZE /drop/inbox/key-link.txt",
        "CWD /shared/escape",
        "MLST /drop/inbox",
        "STAT /shared",
        "SIZE /shared/missing",
        "RNFR /drop/inbox/key-link.txt",
        "RNTO /shared/x",
    )
    assert replies[1] == '257 "/" is the current directory.'
    assert replies[2].startswith("550")  # resolves to /secret/key.txt in the home: absent
    assert replies[3].startswith("550") and replies[4].startswith("550")
    assert replies[5].startswith("550")
    for text in replies:
        assert str(tmp_path) not in text, text
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        get(f, "/drop/inbox/key-link.txt")
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        get(f, "/shared/escape/key.txt")
    lines: list[str] = []
    f.retrlines("LIST -la /shared", lines.append)
    f.retrlines("MLSD /drop/inbox", lines.append)
    assert all(str(tmp_path) not in line for line in lines)
    assert (tree["secret"] / "key.txt").read_bytes() == b"top secret"
    f.quit()


def test_quota_counts_writable_mounts_but_not_read_only_ones(
    serve: Serve, tree: dict[str, Path]
) -> None:
    (tree["inbox"] / "old.bin").write_bytes(b"o" * 100)
    big = tree["shared"] / "docs" / "big.iso"
    big.write_bytes(b"b" * 5000)  # in the read-only mount: not the user's to count
    f = serve(account(tree, quota_bytes=1000)).login("alice")
    assert "Bytes: 104 used of 1000" in f.sendcmd("SITE QUOTA")  # mine.txt + old.bin
    reply = refused_upload(f, "/drop/inbox/new.bin", b"n" * 897)
    assert reply.startswith("552"), reply
    put(f, "/drop/inbox/new.bin", b"n" * 896)
    assert f.sendcmd("AVBL") == "213 0"
    assert no_temp_files(tree["inbox"])
    f.quit()
