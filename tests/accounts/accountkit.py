"""Helpers for the account end-to-end tests: a user database, a server, real clients.

Kept out of ``conftest.py`` so that test modules import them by a unique name.
"""

from __future__ import annotations

import asyncio
import ftplib
import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fileferry.server.thread import ServerThread
from fileferry.storage.local import TEMP_PREFIX
from fileferry.users.base import Account, StoredUser
from fileferry.users.passwords import hash_password
from fileferry.users.sqlite import SQLiteUserStore

PASSWORD = "s3cret-pw"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_db(path: Path, *accounts: Account, password: str = PASSWORD) -> Path:
    """A user database holding ``accounts``, all with ``password``."""

    async def fill() -> None:
        store = SQLiteUserStore(path)
        try:
            for account in accounts:
                await store.add(StoredUser(account, hash_password(password)))
        finally:
            await store.close()

    asyncio.run(fill())
    return path


@dataclass
class Served:
    thread: ServerThread
    root: Path
    db: Path

    @property
    def address(self) -> tuple[str, int]:
        return self.thread.address

    def connect(self) -> ftplib.FTP:
        f = ftplib.FTP(timeout=20)
        f.encoding = "utf-8"
        f.connect(*self.address)
        return f

    def login(self, name: str, password: str = PASSWORD) -> ftplib.FTP:
        f = self.connect()
        f.login(name, password)
        return f

    @property
    def url(self) -> str:
        host, port = self.address
        return f"ftp://{host}:{port}"


#: The ``serve`` fixture: ``serve(*accounts, **config_values) -> Served``.
Serve = Callable[..., Served]


def home_of(homes: Path, name: str) -> Path:
    d = homes / name
    d.mkdir(exist_ok=True)
    return d


def put(ftp: ftplib.FTP, path: str, data: bytes, cmd: str = "STOR", rest: int | None = None) -> str:
    return ftp.storbinary(f"{cmd} {path}", io.BytesIO(data), rest=rest)


def get(ftp: ftplib.FTP, path: str) -> bytes:
    buf = io.BytesIO()
    ftp.retrbinary(f"RETR {path}", buf.write)
    return buf.getvalue()


def refused_upload(ftp: ftplib.FTP, path: str, data: bytes, cmd: str = "STOR") -> str:
    """Send ``data`` as an upload that the server cuts short; return its final reply.

    ftplib's ``storbinary`` gives up on a reset data connection before it
    reads the reply, so the data is sent by hand and the control connection
    is then read for the answer the server gave.
    """
    conn = ftp.transfercmd(f"{cmd} {path}")
    try:
        view = memoryview(data)
        while view:
            sent = conn.send(view[:65536])
            view = view[sent:]
    except OSError:
        pass  # the server closed the data connection: the reply says why
    finally:
        conn.close()
    try:
        return ftp.voidresp()
    except ftplib.error_perm as exc:
        return str(exc)


def no_temp_files(root: Path) -> bool:
    return not any(n.startswith(TEMP_PREFIX) for _, ds, fs in os.walk(root) for n in ds + fs)
