"""``fileferry user``: manage the accounts in the user database.

Operators script this (camera provisioning, partner onboarding), so it is
plain: one subcommand per action, every account field an option with the
same spelling as in the TOML file, ``--json`` for machines, a one-line
error and a non-zero status for duplicates, unknown users and bad values
(1 for the former, 2 for a bad value). Passwords are never taken as an
argument, where ``ps`` and shell history would keep them: they come from a
prompt, from standard input, or are generated and printed once.

A running server reads an account at each login, so changes apply from
the next login on; sessions already logged in keep what they had. The
database is opened, and ``show`` measures usage, through the same backends
as the server's (:mod:`fileferry.backends`), chosen by the scheme of ``--db``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from fileferry import backends
from fileferry.errors import ConfigError, StorageError
from fileferry.users import fields
from fileferry.users.base import KNOWN_LETTERS, Account, StoredUser, UnknownUser, UserStoreError
from fileferry.users.passwords import hash_password


class UsageError(Exception):
    """A request that cannot be carried out as given (exit status 2)."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = subparsers.add_parser(
        "user",
        help="manage accounts in the user database",
        description="Manage FTP accounts in the user database.",
    )
    user.add_argument(
        "--db", metavar="PATH", help=f"user database (default {backends.default_user_store()})"
    )
    user.set_defaults(run=lambda args: _usage(user))
    commands = user.add_subparsers(dest="user_command", metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    add = commands.add_parser("add", parents=[common], help="add an account")
    add.add_argument("name")
    _password_options(add)
    _account_options(add, adding=True)
    add.set_defaults(run=_run(_add))

    listing = commands.add_parser("list", parents=[common], help="list accounts")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=_run(_list))

    show = commands.add_parser("show", parents=[common], help="show an account and its usage")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(run=_run(_show))

    update = commands.add_parser("update", parents=[common], help="change account fields")
    update.add_argument("name")
    _account_options(update, adding=False)
    update.set_defaults(run=_run(_update))

    passwd = commands.add_parser("passwd", parents=[common], help="set a new password")
    passwd.add_argument("name")
    _password_options(passwd)
    passwd.set_defaults(run=_run(_passwd))

    for action, flag in (("disable", True), ("enable", False)):
        p = commands.add_parser(action, parents=[common], help=f"{action} logins of an account")
        p.add_argument("name")
        p.set_defaults(run=_run(_set_disabled), disabled=flag)

    delete = commands.add_parser("del", parents=[common], help="delete an account (not its files)")
    delete.add_argument("name")
    delete.set_defaults(run=_run(_delete))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _password_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    group.add_argument(
        "--generate-password", action="store_true", help="generate one and print it once"
    )


def _account_options(parser: argparse.ArgumentParser, *, adding: bool) -> None:
    g = parser.add_argument_group("account fields")
    g.add_argument(
        "--home", required=adding, metavar="DIR", help="the user's root folder (made if missing)"
    )
    g.add_argument(
        "--permissions",
        metavar="LETTERS",
        help=f"from {KNOWN_LETTERS}: e=cd l=list r=download a=append d=delete"
        " f=rename m=mkdir w=upload M=chmod T=set time X=SITE EXEC (default on add: elr)",
    )
    g.add_argument(
        "--folder-permission",
        action="append",
        default=[],
        metavar="/PATH=LETTERS",
        help="other permissions in a folder and below (repeatable)",
    )
    g.add_argument(
        "--virtual-folder",
        action="append",
        default=[],
        metavar="/PATH=DIR[:ro]",
        help="mount another directory at /PATH, read-only with :ro (repeatable)",
    )
    g.add_argument("--quota-bytes", metavar="SIZE", help="e.g. 500M, 10G; 0 = no limit")
    g.add_argument("--quota-files", metavar="N", help="files the user may keep; 0 = no limit")
    g.add_argument("--max-sessions", metavar="N", help="concurrent sessions; 0 = no limit")
    g.add_argument("--upload-rate", metavar="RATE", help="bytes per second, e.g. 1M; 0 = no limit")
    g.add_argument("--download-rate", metavar="RATE", help="bytes per second; 0 = no limit")
    g.add_argument(
        "--allow-network",
        action="append",
        default=[],
        metavar="CIDR",
        help="allow logins only from these networks (repeatable)",
    )
    g.add_argument("--expires", metavar="DATE", help="last day of use (2025-12-31), or never")
    if adding:
        g.add_argument("--disabled", action="store_true", help="create the account disabled")
        return
    g.add_argument(
        "--remove-folder-permission", action="append", default=[], metavar="/PATH", help=""
    )
    g.add_argument("--remove-virtual-folder", action="append", default=[], metavar="/PATH")
    g.add_argument("--remove-network", action="append", default=[], metavar="CIDR")
    g.add_argument("--any-network", action="store_true", help="drop every network restriction")


# --- running ------------------------------------------------------------------------------


def _run(action: Callable[[argparse.Namespace], Coroutine[Any, Any, int]]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(action(args))
        except UnknownUser as exc:
            print(f"fileferry user: {exc}", file=sys.stderr)
            return 1
        except (ConfigError, UsageError) as exc:
            print(f"fileferry user: {exc}", file=sys.stderr)
            return 2
        except UserStoreError as exc:
            print(f"fileferry user: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130

    return run


def _db(args: argparse.Namespace) -> str:
    return str(args.db) if args.db else backends.default_user_store()


def _open(args: argparse.Namespace, *, create: bool = False) -> backends.AdminStore:
    db = _db(args)
    backend = backends.user_store_backend(db)
    if not create and not backend.exists(db):
        raise UserStoreError(
            f"user database {db} does not exist; add a user first (fileferry user add)"
        )
    return backend.open(db, create=create)


def _read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated?) from stdin, a generator or a prompt."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("no password on standard input")
        return password, False
    if args.generate_password:
        import secrets

        return secrets.token_urlsafe(15), True
    if not sys.stdin.isatty():
        raise UsageError(
            "no terminal to ask for a password: use --password-stdin or --generate-password"
        )
    import getpass  # only when a password is typed

    password = getpass.getpass("Password: ")
    if not password:
        raise UsageError("the password may not be empty")
    if getpass.getpass("Again: ") != password:
        raise UsageError("the passwords differ")
    return password, False


def _apply_options(account: Account, args: argparse.Namespace) -> Account:
    """The account with every option given on the command line applied."""
    changes: dict[str, object] = {}
    if args.home is not None:
        changes["home"] = fields.host_directory(args.home, "--home")
    if args.permissions is not None:
        changes["permissions"] = fields.parse_permissions(args.permissions, "--permissions")
    rules = {r.path: r for r in account.folder_permissions}
    for path in getattr(args, "remove_folder_permission", []):
        rules.pop(fields.virtual_path(path, "--remove-folder-permission"), None)
    for text in args.folder_permission:
        rule = fields.parse_folder_rule(text, "--folder-permission")
        rules[rule.path] = rule
    changes["folder_permissions"] = tuple(rules.values())
    folders = {f.path: f for f in account.virtual_folders}
    for path in getattr(args, "remove_virtual_folder", []):
        folders.pop(fields.virtual_path(path, "--remove-virtual-folder"), None)
    for text in args.virtual_folder:
        folder = fields.parse_virtual_folder(text, "--virtual-folder")
        folders[folder.path] = folder
    changes["virtual_folders"] = tuple(folders.values())
    for option in ("quota_bytes", "upload_rate", "download_rate"):
        value = getattr(args, option)
        if value is not None:
            changes[option] = fields.parse_size(value, "--" + option.replace("_", "-"))
    for option in ("quota_files", "max_sessions"):
        value = getattr(args, option)
        if value is not None:
            changes[option] = fields.parse_count(value, "--" + option.replace("_", "-"))
    networks = [] if getattr(args, "any_network", False) else list(account.allowed_networks)
    removed = {
        fields.parse_network(n, "--remove-network") for n in getattr(args, "remove_network", [])
    }
    networks = [n for n in networks if n not in removed]
    networks += [fields.parse_network(n, "--allow-network") for n in args.allow_network]
    changes["allowed_networks"] = tuple(dict.fromkeys(networks))
    if args.expires is not None:
        changes["expires"] = fields.parse_expiry(args.expires, "--expires")
    if getattr(args, "disabled", False):
        changes["disabled"] = True
    return fields.check_account(replace(account, **changes))  # type: ignore[arg-type]


def _local(location: str) -> bool:
    """A folder of this machine (a URL such as ``s3://bucket/prefix`` is checked where served)."""
    return backends.scheme_of(location) == "file"


def check_folders(account: Account, db: str, *, may_make_home: bool) -> None:
    """Homes and sources must be usable and must not hold the database.

    Also the web admin's rule (:mod:`fileferry.webadmin.forms`): one rule, two doors.
    """
    home = Path(account.home)
    if _local(account.home) and not home.is_dir() and (home.exists() or not may_make_home):
        raise UsageError(f"home {account.home} is not a directory")
    for folder in account.virtual_folders:
        if _local(folder.source) and not Path(folder.source).is_dir():
            raise UsageError(f"virtual folder {folder.path}: {folder.source} is not a directory")
    served = [account.home, *(f.source for f in account.virtual_folders)]
    holder = backends.user_store_backend(db).held_by(db, served)
    if holder is not None:
        raise UsageError(
            f"{holder} holds the user database {db}: a client could download it;"
            " keep the database outside every served folder"
        )


async def _add(args: argparse.Namespace) -> int:
    name = fields.check_new_name(args.name, "NAME")
    if name.lower() in fields.RESERVED_NAMES:
        raise UsageError(f"{name!r} is reserved for anonymous FTP (serve --anonymous)")
    account = _apply_options(Account(name=name, home=args.home), args)
    db = _db(args)
    if backends.user_store_backend(db).exists(db):
        store = _open(args)
        try:
            await store.get(name)
        except UnknownUser:
            pass
        else:
            raise UserStoreError(f"user {name!r} already exists")
        finally:
            await store.close()
    check_folders(account, db, may_make_home=True)
    password, generated = _read_password(args)
    home = Path(account.home)
    if _local(account.home) and not home.is_dir():
        home.mkdir(parents=True, mode=0o750)
        print(f"made home folder {home}")
    store = _open(args, create=True)
    try:
        await store.add(StoredUser(account, await asyncio.to_thread(hash_password, password)))
    finally:
        await store.close()
    print(f"added user {name} (home {account.home})")
    if generated:
        print(f"password for {name} (shown only this once): {password}")
    return 0


def _status(account: Account, now: float) -> str:
    if account.disabled:
        return "disabled"
    if account.expires is not None and now >= account.expires:
        return "expired"
    return "enabled"


def _limit(value: int, size: bool) -> str:
    if not value:
        return "-"
    return fields.format_size(value) if size else str(value)


async def _list(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        users = await store.list()
    finally:
        await store.close()
    now = time.time()
    if args.json:
        rows = [_json(u, now) for u in users]
        import json

        print(json.dumps(rows, indent=2))
        return 0
    table = [("NAME", "STATUS", "PERMISSIONS", "QUOTA", "FILES", "HOME")]
    for u in users:
        a = u.account
        table.append(
            (
                a.name,
                _status(a, now),
                a.permissions or "-",
                _limit(a.quota_bytes, True),
                _limit(a.quota_files, False),
                a.home,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        )
    if not users:
        print("(no users)")
    return 0


def _json(user: StoredUser, now: float) -> dict[str, object]:
    data = fields.account_to_dict(user.account)
    data["status"] = _status(user.account, now)
    data["created"] = fields.format_expiry(user.created)
    data["last_login"] = None if user.last_login is None else fields.format_expiry(user.last_login)
    return data


async def _usage_of(account: Account) -> tuple[int, int] | None:
    """Bytes and files counted against the quota, walked now; ``None`` if unreadable.

    The tree is the one the server would give the account (the same storage
    backend), less virtual folders whose source is gone.
    """
    from fileferry.config import ServerConfig
    from fileferry.storage.usage import measure

    present = tuple(
        f for f in account.virtual_folders if not _local(f.source) or os.path.isdir(f.source)
    )
    provider = backends.open_storage(ServerConfig())
    try:
        tree = provider(replace(account, virtual_folders=present))
        exclude = [f.path for f in present if f.read_only]
        usage = await measure(tree, "/", exclude)
    except (ConfigError, StorageError):
        return None
    finally:
        await provider.close()
    return usage.bytes, usage.files


async def _show(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        user = await store.get(args.name)
    finally:
        await store.close()
    a = user.account
    usage = await _usage_of(a)
    now = time.time()
    if args.json:
        data = _json(user, now)
        data["usage"] = None if usage is None else {"bytes": usage[0], "files": usage[1]}
        import json

        print(json.dumps(data, indent=2))
        return 0
    lines = [
        ("name", a.name),
        ("status", _status(a, now)),
        ("home", a.home),
        ("permissions", a.permissions or "(none)"),
    ]
    lines += [(f"  in {r.path}", r.permissions or "(none)") for r in a.folder_permissions]
    lines += [
        (f"virtual folder {f.path}", f.source + (" (read-only)" if f.read_only else ""))
        for f in a.virtual_folders
    ]
    if usage is None:
        used = "unknown (home folder missing)"
    else:
        used = f"{fields.format_size(usage[0])} ({usage[0]} bytes) in {usage[1]} files"
    lines += [
        ("quota", f"{_limit(a.quota_bytes, True)} bytes, {_limit(a.quota_files, False)} files"),
        ("used", used),
        ("max sessions", _limit(a.max_sessions, False)),
        ("upload rate", _rate(a.upload_rate)),
        ("download rate", _rate(a.download_rate)),
        ("allowed networks", ", ".join(a.allowed_networks) or "any"),
        ("expires", fields.format_expiry(a.expires)),
        ("created", fields.format_expiry(user.created)),
        (
            "last login",
            "never" if user.last_login is None else fields.format_expiry(user.last_login),
        ),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")
    return 0


def _rate(value: int) -> str:
    return "unlimited" if not value else f"{fields.format_size(value)}/s"


async def _update(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        user = await store.get(args.name)
        account = _apply_options(user.account, args)
        check_folders(account, _db(args), may_make_home=False)
        await store.update(account)
    finally:
        await store.close()
    print(f"updated user {account.name}")
    return 0


async def _passwd(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        await store.get(args.name)
        password, generated = _read_password(args)
        await store.set_password(args.name, await asyncio.to_thread(hash_password, password))
    finally:
        await store.close()
    print(f"password of {args.name} changed")
    if generated:
        print(f"password for {args.name} (shown only this once): {password}")
    return 0


async def _set_disabled(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        user = await store.get(args.name)
        await store.update(replace(user.account, disabled=args.disabled))
    finally:
        await store.close()
    print(f"{'disabled' if args.disabled else 'enabled'} user {args.name}")
    return 0


async def _delete(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        await store.delete(args.name)
    finally:
        await store.close()
    print(f"deleted user {args.name} (their files are kept)")
    return 0
