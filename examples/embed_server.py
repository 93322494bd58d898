#!/usr/bin/env python3
"""fileferry embedded in a program: your own users, your own storage.

The idea
--------
A server library is useful when its *policy* is yours and its *protocol* is
its own. fileferry keeps the FTP protocol in a core that knows nothing of
files or passwords, and asks two small interfaces for those:

* a ``UserStore``: ``authenticate(name, password) -> Account | None``;
* a storage factory: ``Account -> Storage`` (local disk, memory, later S3).

So embedding is: write (or pick) those two, hand them to ``FTPServer``, and
``await server.start()``. Here the users live in a dict (a real program
would ask its database), and every user gets a private in-memory tree, which
makes this a handy disposable FTP server for a test suite. The heart of it
is ``serve()``: about twenty lines.

Try it::

    python examples/embed_server.py server --port 2121
    python examples/embed_server.py client --port 2121 --user demo:demo README.md
"""

from __future__ import annotations

import argparse
import asyncio
import ftplib
import hmac
import io
import signal
import sys
from pathlib import Path

from fileferry import config
from fileferry.server.app import FTPServer
from fileferry.storage.base import Storage
from fileferry.storage.memory import MemoryStorage
from fileferry.users.base import ALL_PERMISSIONS, Account, UserStore


class DictUsers(UserStore):
    """Users from a dict. Compare in constant time: timing must not leak a password."""

    def __init__(self, passwords: dict[str, str]) -> None:
        self.passwords = passwords

    async def authenticate(self, username: str, password: str) -> Account | None:
        expected = self.passwords.get(username, "\0never-matches")
        if hmac.compare_digest(expected.encode(), password.encode()) and username in self.passwords:
            return Account(username, home=f"memory:{username}", permissions=ALL_PERMISSIONS)
        return None


async def serve(host: str, port: int, passwords: dict[str, str]) -> None:
    trees: dict[str, Storage] = {}

    def storage_for(account: Account) -> Storage:  # one private tree per user
        return trees.setdefault(account.name, MemoryStorage())

    cfg = config.build({"host": host, "port": port, "anonymous": False})
    server = FTPServer(cfg, users=DictUsers(passwords), storage_for=storage_for)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before the ready line, so none is missed
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await server.start()
    print(f"listening on {server.address[0]}:{server.address[1]}", flush=True)
    await stop.wait()
    await server.stop()


def client(host: str, port: int, user: str, files: list[str]) -> int:
    """Upload each file, list the tree, download each back and compare."""
    name, _, password = user.partition(":")
    with ftplib.FTP() as ftp:
        ftp.connect(host, port, timeout=20)
        ftp.login(name, password)
        for path in files:
            data = Path(path).read_bytes()
            ftp.storbinary(f"STOR {Path(path).name}", io.BytesIO(data))
            back = io.BytesIO()
            ftp.retrbinary(f"RETR {Path(path).name}", back.write)
            same = "same bytes" if back.getvalue() == data else "DIFFERENT"
            print(f"{Path(path).name}: {len(data)} bytes up and down, {same}")
        ftp.retrlines("LIST")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="mode", required=True)
    srv = sub.add_parser("server", help="run the embedded server (in-memory storage)")
    cli = sub.add_parser("client", help="upload, list and download with ftplib")
    for p in (srv, cli):
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=2121)
    srv.add_argument(
        "--login",
        action="append",
        default=[],
        metavar="NAME:PASSWORD",
        help="a user (repeatable; default demo:demo)",
    )
    cli.add_argument("--user", default="demo:demo", metavar="NAME:PASSWORD")
    cli.add_argument("files", nargs="*")
    args = parser.parse_args(argv)
    if args.mode == "server":
        specs = args.login or ["demo:demo"]
        if not all(":" in spec for spec in specs):
            parser.error("--login takes NAME:PASSWORD")
        logins = dict(spec.split(":", 1) for spec in specs)
        asyncio.run(serve(args.host, args.port, logins))
        return 0
    return client(args.host, args.port, args.user, args.files)


if __name__ == "__main__":
    sys.exit(main())
