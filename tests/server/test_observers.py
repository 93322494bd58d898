"""Observers passed to the server get every session outcome as a typed event."""

from __future__ import annotations

import ftplib
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverkit import connect, sha256

from fileferry import config
from fileferry.observability import SessionLog
from fileferry.observability import events as seen
from fileferry.server.datapath.choose import CAN_SPLICE
from fileferry.server.thread import ServerThread
from fileferry.storage.base import Capabilities
from fileferry.storage.memory import MemoryStorage
from fileferry.users.base import Account


class Recorder:
    """Keeps the events; ``closed`` is set by each session's last one."""

    def __init__(self) -> None:
        self.events: list[seen.SessionEvent] = []
        self.closed = threading.Event()
        self._lock = threading.Lock()  # with several workers, several threads call

    def __call__(self, event: seen.SessionEvent) -> None:
        with self._lock:
            self.events.append(event)
        if isinstance(event, seen.SessionClosed):
            self.closed.set()

    def of(self, kind: type[seen.SessionEvent]) -> list[seen.SessionEvent]:
        return [e for e in self.events if isinstance(e, kind)]


def _config(root: Path, **values: object) -> config.ServerConfig:
    values.setdefault("root", str(root))
    values.setdefault("port", 0)
    values.setdefault("login_failure_delay", 0)
    values.setdefault("write", True)
    values["users"] = (config.parse_user_spec("alice:secret"),)
    return config.build(values)


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[ServerThread, Recorder, Path]]:
    root = tmp_path / "root"
    root.mkdir()
    recorder = Recorder()
    with ServerThread(_config(root), observers=[recorder, SessionLog()]) as srv:
        yield srv, recorder, root


def test_a_session_reports_typed_outcomes(recorded) -> None:
    srv, rec, root = recorded
    payload = bytes(range(256)) * 40
    (root / "a.bin").write_bytes(payload)
    f = connect(srv)
    with pytest.raises(ftplib.error_perm, match=r"^530"):
        f.login("alice", "wrong")
    f.login("alice", "secret")
    buf = io.BytesIO()
    f.retrbinary("RETR a.bin", buf.write)
    assert sha256(buf.getvalue()) == sha256(payload)
    f.storbinary("STOR up.bin", io.BytesIO(b"u" * 1234))
    f.mkd("d")
    f.rename("up.bin", "d/moved.bin")
    f.delete("d/moved.bin")
    f.rmd("d")
    f.quit()
    assert rec.closed.wait(20)

    kinds = [type(e) for e in rec.events]
    assert kinds == [
        seen.SessionOpened,
        seen.LoginFailed,
        seen.LoginSucceeded,
        seen.TransferFinished,
        seen.TransferFinished,
        seen.FileUploaded,
        seen.DirectoryMade,
        seen.Renamed,
        seen.FileDeleted,
        seen.DirectoryRemoved,
        seen.SessionClosed,
    ]
    opened, failed, login, retr, stor, uploaded, mkd, ren, dele, rmd, closed = rec.events
    assert {e.origin.session for e in rec.events} == {opened.origin.session}
    assert opened.origin.user is None and failed.origin.user is None
    assert isinstance(failed, seen.LoginFailed) and failed.username == "alice"
    assert isinstance(login, seen.LoginSucceeded) and login.origin.user == "alice"
    assert not login.anonymous
    assert isinstance(retr, seen.TransferFinished)
    assert (retr.command, retr.path, retr.direction, retr.bytes, retr.reply_code) == (
        "RETR",
        "/a.bin",
        "download",
        len(payload),
        226,
    )
    assert isinstance(stor, seen.TransferFinished)
    assert (stor.command, stor.direction, stor.bytes, stor.reply_code) == (
        "STOR",
        "upload",
        1234,
        226,
    )
    assert stor.seconds >= 0 and retr.at <= stor.at
    # Cleartext binary on local disk: the kernel moved the bytes both ways.
    assert (retr.data_path, stor.data_path) == ("sendfile", "splice" if CAN_SPLICE else "loop")
    # The accepted upload, as a file: its size and where it lies on disk.
    assert isinstance(uploaded, seen.FileUploaded)
    assert (uploaded.command, uploaded.path, uploaded.size) == ("STOR", "/up.bin", 1234)
    assert uploaded.local_path == str(root / "up.bin") and uploaded.at <= stor.at  # at the commit
    assert isinstance(mkd, seen.DirectoryMade) and mkd.path == "/d"
    assert isinstance(ren, seen.Renamed) and (ren.src, ren.dst) == ("/up.bin", "/d/moved.bin")
    assert isinstance(dele, seen.FileDeleted) and dele.path == "/d/moved.bin"
    assert isinstance(rmd, seen.DirectoryRemoved) and rmd.path == "/d"
    assert closed.origin.user == "alice"
    assert not (root / "d").exists()


def test_a_failed_transfer_reports_its_reply_code(recorded) -> None:
    srv, rec, _root = recorded
    f = connect(srv)
    f.login("alice", "secret")
    f.sendcmd("PASV")
    # A STOR into a folder that does not exist: refused before any 150.
    with pytest.raises(ftplib.error_perm, match=r"^55"):
        f.storbinary("STOR nowhere/x.bin", io.BytesIO(b"x"))
    buf = io.BytesIO()
    with pytest.raises(ftplib.error_perm, match=r"^550"):
        f.retrbinary("RETR missing.bin", buf.write)
    f.quit()
    assert rec.closed.wait(20)
    # Refused before the data phase: no transfer took place, none is reported.
    assert rec.of(seen.TransferFinished) == []


def test_an_observer_that_raises_changes_nothing_for_the_client(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: seen.SessionEvent) -> None:
        raise ValueError("broken observer")

    rec = Recorder()
    with ServerThread(_config(tmp_path), observers=[broken, rec]) as srv:
        f = connect(srv)
        assert f.login("alice", "secret").startswith("230")
        f.mkd("made")
        assert f.quit().startswith("221")
        assert rec.closed.wait(20)
    assert (tmp_path / "made").is_dir()
    assert [type(e) for e in rec.events] == [
        seen.SessionOpened,
        seen.LoginSucceeded,
        seen.DirectoryMade,
        seen.SessionClosed,
    ]
    assert "broken observer" in caplog.text


class _NoModes:
    """A storage factory whose backend can set neither times nor modes."""

    capabilities = Capabilities(set_mtime=False, set_mode=False)

    def __call__(self, account: Account) -> MemoryStorage:
        return MemoryStorage()


def test_feat_and_site_follow_the_storage_capabilities(tmp_path: Path) -> None:
    with ServerThread(_config(tmp_path), storage_for=_NoModes()) as srv:
        f = connect(srv)
        feats = {line.strip() for line in f.sendcmd("FEAT").splitlines()[1:-1]}
        assert "MFMT" not in feats
        assert {"MDTM", "SIZE", "AVBL", "UTF8"} <= feats
        f.login("alice", "secret")
        site_help = f.sendcmd("SITE HELP")
        assert "QUOTA" in site_help and "CHMOD" not in site_help
        with pytest.raises(ftplib.error_perm, match=r"^501 Unknown SITE command"):
            f.sendcmd("SITE CHMOD 644 x")
        f.quit()


def test_a_local_disk_server_offers_mfmt_and_chmod(tmp_path: Path) -> None:
    with ServerThread(_config(tmp_path)) as srv:
        f = connect(srv)
        feats = {line.strip() for line in f.sendcmd("FEAT").splitlines()[1:-1]}
        assert {"MFMT", "AVBL"} <= feats
        f.login("alice", "secret")
        assert "CHMOD" in f.sendcmd("SITE HELP")
        (tmp_path / "x").write_bytes(b"x")
        assert f.sendcmd("SITE CHMOD 640 x").startswith("200")
        assert (tmp_path / "x").stat().st_mode & 0o777 == 0o640
        f.quit()
