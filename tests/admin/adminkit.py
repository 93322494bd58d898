"""A real server with ``--admin`` on a thread, a user database made for it, and HTTP helpers.

The admin runs with one worker only, so these servers are started here
rather than through ``ServerThread`` (which the suite may switch to several
workers): one thread, one loop, exactly what ``fileferry serve --admin`` runs.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from fileferry import config
from fileferry.server import eventloop
from fileferry.server.app import FTPServer
from fileferry.users.admins import new_token, token_digest
from fileferry.users.base import Account, StoredUser
from fileferry.users.passwords import hash_password
from fileferry.users.sqlite import SQLiteUserStore

ADMIN = "root"
ADMIN_PASSWORD = "correct horse battery staple"
USER = "alice"
USER_PASSWORD = "alice-secret-pw"


@dataclass
class AdminServer:
    server: FTPServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    db: Path | str
    homes: Path
    token: str

    @property
    def ftp(self) -> tuple[str, int]:
        return self.server.address

    @property
    def url(self) -> str:
        assert self.server.admin is not None
        return self.server.admin.url.rstrip("/")

    def stop(self) -> None:
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.thread.join(30)

    def api(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)


def make_db(path: Path | str, homes: Path, *, admins: bool = True, **account: Any) -> str:
    """A user database with ``alice`` (and ``root`` as administrator); returns a token of root's.

    ``path``: an SQLite file, or a ``postgresql://`` URL.
    """

    async def fill() -> str:
        store: Any
        if str(path).startswith("postgresql://"):
            from fileferry.users.postgres import PostgresUserStore

            store = PostgresUserStore(str(path))
        else:
            store = SQLiteUserStore(Path(path))
        try:
            home = homes / USER
            home.mkdir(parents=True, exist_ok=True)
            acct = Account(name=USER, home=str(home), permissions="elradfmw", **account)
            await store.add(StoredUser(acct, hash_password(USER_PASSWORD)))
            token = new_token()
            if admins:
                await store.add_admin(ADMIN, hash_password(ADMIN_PASSWORD))
                await store.add_token(ADMIN, token_digest(token), "tests")
            return token
        finally:
            await store.close()

    return asyncio.run(fill())


def start(
    tmp: Path,
    *,
    admins: bool = True,
    account: dict[str, Any] | None = None,
    db_url: str | None = None,
    **values: Any,
) -> AdminServer:
    homes = tmp / "homes"
    homes.mkdir(exist_ok=True)
    db: Path | str = db_url or tmp / "users.db"
    token = make_db(db, homes, admins=admins, **(account or {}))
    root = tmp / "root"
    root.mkdir(exist_ok=True)
    settings: dict[str, Any] = {
        "root": str(root),
        "port": 0,
        "db": str(db),
        "admin": "127.0.0.1:0",
        "anonymous": False,
        "login_failure_delay": 0,
        "idle_timeout": 60,
        "data_timeout": 30,
        "accept_timeout": 10,
    }
    settings.update(values)
    cfg = config.build(settings)
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        try:
            server = FTPServer(cfg)
            await server.start()
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            return
        box["server"], box["loop"] = server, asyncio.get_running_loop()
        ready.set()
        await server.serve_forever()

    thread = threading.Thread(target=eventloop.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    if "error" in box:
        raise box["error"]
    return AdminServer(box["server"], box["loop"], thread, db, homes, token)


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def browser_login(
    srv: AdminServer, name: str = ADMIN, password: str = ADMIN_PASSWORD
) -> httpx.Client:
    """An HTTP client logged in through the login form, as a browser would be."""
    client = httpx.Client(base_url=srv.url, timeout=30)
    page = client.get("/login")
    reply = client.post(
        "/login", data={"name": name, "password": password, "csrf": csrf_of(page.text)}
    )
    assert reply.status_code == 303, reply.text
    return client


def stored_tokens(db: Path) -> list[str]:
    with sqlite3.connect(db) as raw:
        return [row[0] for row in raw.execute("SELECT digest FROM admin_tokens")]
