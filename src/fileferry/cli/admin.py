"""``fileferry admin``: the web admin's administrators and their API tokens.

Administrators are kept apart from FTP accounts, in the same user database
(``--db``, as for ``fileferry user``). Passwords come from a prompt or
standard input, never an argument; an API token is printed once, and only
its hash is stored, so a lost token is revoked and a new one issued.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any, cast

from fileferry import backends
from fileferry.cli.user import UsageError, _db, _read_password
from fileferry.errors import ConfigError
from fileferry.users import admins
from fileferry.users.admins import AdminDirectory
from fileferry.users.base import UserStoreError
from fileferry.users.fields import format_expiry
from fileferry.users.passwords import hash_password


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = subparsers.add_parser(
        "admin",
        help="manage web administrators and API tokens",
        description="Manage the web admin's administrators (apart from FTP accounts).",
    )
    admin.add_argument(
        "--db", metavar="PATH", help=f"user database (default {backends.default_user_store()})"
    )

    def usage(args: argparse.Namespace) -> int:
        admin.print_help()
        return 2

    admin.set_defaults(run=usage)
    commands = admin.add_subparsers(dest="admin_command", metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    def password_options(parser: argparse.ArgumentParser) -> None:
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--password-stdin", action="store_true", help="read it from stdin")
        group.add_argument(
            "--generate-password", action="store_true", help="generate one and print it once"
        )

    add = commands.add_parser("add", parents=[common], help="add an administrator")
    add.add_argument("name")
    password_options(add)
    add.set_defaults(run=_run(_add))

    listing = commands.add_parser("list", parents=[common], help="list administrators")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=_run(_list))

    passwd = commands.add_parser("passwd", parents=[common], help="set a new password")
    passwd.add_argument("name")
    password_options(passwd)
    passwd.set_defaults(run=_run(_passwd))

    delete = commands.add_parser("del", parents=[common], help="delete an administrator")
    delete.add_argument("name")
    delete.set_defaults(run=_run(_delete))

    token = commands.add_parser("token", parents=[common], help="issue an API token (shown once)")
    token.add_argument("name")
    token.add_argument("--label", default="", help="what the token is for")
    token.set_defaults(run=_run(_token))

    tokens = commands.add_parser("tokens", parents=[common], help="list API tokens (not values)")
    tokens.add_argument("name", nargs="?")
    tokens.set_defaults(run=_run(_tokens))

    revoke = commands.add_parser("revoke", parents=[common], help="revoke an API token by id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(run=_run(_revoke))


def _run(action: Callable[[argparse.Namespace], Coroutine[Any, Any, int]]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(action(args))
        except (ConfigError, UsageError) as exc:
            print(f"fileferry admin: {exc}", file=sys.stderr)
            return 2
        except UserStoreError as exc:
            print(f"fileferry admin: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130

    return run


def _open(args: argparse.Namespace, *, create: bool = False) -> AdminDirectory:
    db = _db(args)
    backend = backends.user_store_backend(db)
    if not create and not backend.exists(db):
        raise UserStoreError(
            f"user database {db} does not exist; add an administrator first (fileferry admin add)"
        )
    store = backend.open(db, create=create)
    if not isinstance(store, AdminDirectory):
        asyncio.get_running_loop().create_task(store.close())
        raise UsageError(f"the user database {db} cannot hold web administrators")
    return store


async def _close(store: AdminDirectory) -> None:
    await cast("backends.AdminStore", store).close()


async def _add(args: argparse.Namespace) -> int:
    name = admins.check_admin_name(args.name)
    store = _open(args, create=True)
    try:
        if await store.find_admin(name) is not None:
            raise UserStoreError(f"administrator {name!r} already exists")
        password, generated = _read_password(args)
        await store.add_admin(name, await asyncio.to_thread(hash_password, password))
    finally:
        await _close(store)
    print(f"added administrator {name}")
    if generated:
        print(f"password for {name} (shown only this once): {password}")
    return 0


async def _list(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        found = await store.list_admins()
    finally:
        await _close(store)
    rows = [
        {
            "name": a.name,
            "created": format_expiry(a.created),
            "last_login": None if a.last_login is None else format_expiry(a.last_login),
        }
        for a in found
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']}  created {row['created']}  last login {row['last_login'] or 'never'}")
    if not rows:
        print("(no administrators)")
    return 0


async def _passwd(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        if await store.find_admin(args.name) is None:
            raise admins.UnknownAdmin(f"no administrator named {args.name!r}")
        password, generated = _read_password(args)
        await store.set_admin_password(args.name, await asyncio.to_thread(hash_password, password))
    finally:
        await _close(store)
    print(f"password of administrator {args.name} changed")
    if generated:
        print(f"password for {args.name} (shown only this once): {password}")
    return 0


async def _delete(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        await store.delete_admin(args.name)
    finally:
        await _close(store)
    print(f"deleted administrator {args.name} (and their API tokens)")
    return 0


async def _token(args: argparse.Namespace) -> int:
    store = _open(args)
    token = admins.new_token()
    try:
        token_id = await store.add_token(args.name, admins.token_digest(token), args.label)
    finally:
        await _close(store)
    print(f"API token {token_id} for {args.name} (shown only this once; only a hash is kept):")
    print(token)
    print("use it as: Authorization: Bearer TOKEN", file=sys.stderr)
    return 0


async def _tokens(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        found = await store.list_tokens(args.name)
    finally:
        await _close(store)
    for t in found:
        used = "never used" if t.last_used is None else f"last used {format_expiry(t.last_used)}"
        print(f"{t.id}  {t.admin}  {t.label or '-'}  created {format_expiry(t.created)}  {used}")
    if not found:
        print("(no API tokens)")
    return 0


async def _revoke(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        await store.revoke_token(args.id)
    finally:
        await _close(store)
    print(f"revoked API token {args.id}")
    return 0
