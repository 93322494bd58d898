"""The list tables of a config file: ``[[user]]`` and ``[site_exec.NAME]``.

Each entry is checked whole here, so a typo in a user's hash or a command's
argv is a one-line error at start naming the entry, never an account that
cannot log in or a command that fails at the first SITE EXEC.
"""

from __future__ import annotations

import os
import re

from fileferry.config.describe import as_bool, as_number
from fileferry.config.model import SiteExecCommand, UserConfig
from fileferry.errors import ConfigError
from fileferry.users import fields as account_fields
from fileferry.users.passwords import hash_password, is_valid_hash


def parse_user_spec(spec: str) -> UserConfig:
    """``NAME:PASSWORD`` from ``--user``; the password is hashed at once."""
    name, sep, password = spec.partition(":")
    if not sep or not name or not password:
        raise ConfigError(f"--user {name or spec!r}: expected NAME:PASSWORD")
    _check_user_name(name, "--user")
    return UserConfig(name=name, password_hash=hash_password(password))


def _check_user_name(name: str, where: str) -> None:
    if not name.isprintable() or " " in name or len(name) > 64:
        raise ConfigError(f"{where}: user name {name!r} is not allowed")


def users_from_toml(items: object, source: str) -> tuple[UserConfig, ...]:
    if not isinstance(items, list):
        raise ConfigError(f"{source}: [[user]] must be a list of tables")
    users = []
    for i, item in enumerate(items):
        where = f"{source}: user #{i + 1}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a table")
        unknown = set(item) - {"name", "password", "password_hash", "home", "write", "site_exec"}
        unknown -= set(account_fields.ACCOUNT_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: 'name' is required")
        _check_user_name(name, where)
        if "password_hash" in item:
            pw_hash = item["password_hash"]
            if not isinstance(pw_hash, str) or not is_valid_hash(pw_hash):
                # Loading it would make an account that can never log in.
                raise ConfigError(
                    f"{where} ({name!r}): password_hash is not an argon2 or scrypt hash"
                    " that fileferry can verify, so this user could never log in"
                )
        elif isinstance(item.get("password"), str) and item["password"]:
            pw_hash = hash_password(item["password"])
        else:
            raise ConfigError(f"{where}: 'password' or 'password_hash' is required")
        home = item.get("home")
        if home is not None and not isinstance(home, str):
            raise ConfigError(f"{where}: 'home' must be a path")
        users.append(
            UserConfig(
                name,
                pw_hash,
                home,
                write=as_bool(f"{where}: write", item.get("write", True)),
                site_exec=as_bool(f"{where}: site_exec", item.get("site_exec", False)),
                account_fields=tuple(account_fields.account_fields_from_toml(item, where).items()),
            )
        )
    return tuple(users)


_SITE_EXEC_KEYS = {"argv", "args", "timeout", "max_output", "description"}


def site_exec_from_toml(table: object, source: str) -> tuple[SiteExecCommand, ...]:
    """``[site_exec.NAME]`` tables: argv list, optional per-argument patterns."""
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [site_exec] must be a table of commands")
    commands = []
    for name, item in table.items():
        where = f"{source}: site_exec.{name}"
        if not (name.isascii() and name.replace("-", "").replace("_", "").isalnum()):
            raise ConfigError(f"{where}: command names are letters, digits, - and _")
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a table")
        unknown = set(item) - _SITE_EXEC_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        argv = item.get("argv")
        if (
            not isinstance(argv, list)
            or not argv
            or not all(isinstance(a, str) and a for a in argv)
        ):
            raise ConfigError(f"{where}: 'argv' must be a non-empty list of strings")
        if not os.path.isabs(argv[0]):
            raise ConfigError(f"{where}: argv[0] must be an absolute path (no PATH lookup)")
        patterns = item.get("args", [])
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise ConfigError(f"{where}: 'args' must be a list of regular expressions")
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"{where}: bad pattern {pattern!r} ({exc})") from None
        timeout = as_number(f"{where}.timeout", item.get("timeout", 10.0), float)
        max_output = as_number(f"{where}.max_output", item.get("max_output", 65536), int)
        if not 0 < timeout <= 3600:
            raise ConfigError(f"{where}: timeout must be between 0 and 3600 seconds")
        if not 0 < max_output <= 16 * 1024 * 1024:
            raise ConfigError(f"{where}: max_output must be between 1 and 16 MiB")
        description = item.get("description", "")
        if not isinstance(description, str):
            raise ConfigError(f"{where}: 'description' must be text")
        commands.append(
            SiteExecCommand(
                name=name.lower(),
                argv=tuple(argv),
                arg_patterns=tuple(patterns),
                timeout=float(timeout),
                max_output=int(max_output),
                description=description,
            )
        )
    return tuple(commands)
