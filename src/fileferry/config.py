"""Frozen, validated configuration merged from defaults, TOML, environment and flags.

Precedence, lowest first: built-in defaults, the ``--config`` TOML file,
``FILEFERRY_*`` environment variables, command-line flags. Every value is
checked once here, at start; an unknown key or a bad value raises
:class:`ConfigError` naming the key and the problem, so the operator sees
one clear line instead of a traceback at the first connection.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from fileferry.errors import ConfigError
from fileferry.users import fields as account_fields
from fileferry.users.passwords import hash_password

LOG_LEVELS = ("debug", "info", "warning", "error")
FS_CALLS = ("auto", "inline", "thread")


@dataclass(frozen=True, slots=True)
class UserConfig:
    name: str
    password_hash: str
    #: Host directory; ``None`` means the served directory.
    home: str | None = None
    write: bool = True
    #: May run the operator's SITE EXEC commands (never implied by ``write``).
    site_exec: bool = False
    #: Further ``Account`` fields from the ``[[user]]`` table (quotas, rates...),
    #: already checked by :mod:`fileferry.users.fields`.
    account_fields: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class SiteExecCommand:
    """One operator-defined command for SITE EXEC; never run through a shell."""

    name: str
    argv: tuple[str, ...]
    #: A regular expression per client argument position; no pattern, no argument.
    arg_patterns: tuple[str, ...] = ()
    timeout: float = 10.0
    max_output: int = 64 * 1024
    description: str = ""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    root: str = "."
    host: str = "127.0.0.1"
    port: int = 2121
    anonymous: bool = True
    write: bool = False
    users: tuple[UserConfig, ...] = ()
    passive_ports: tuple[int, int] | None = None
    masquerade_address: str | None = None
    idle_timeout: float = 300.0
    data_timeout: float = 300.0
    #: How long a PASV listener waits for the client's connection.
    accept_timeout: float = 60.0
    login_failure_delay: float = 1.0
    log_level: str = "info"
    banner: str = "fileferry FTP server ready."
    max_line: int = 4200
    max_list_entries: int = 200_000
    fsync_uploads: bool = False
    #: Where local-disk metadata calls (open, stat, rename) run: "inline" on the
    #: event loop, "thread" in the pool, "auto" inline on local file systems
    #: and in the pool on network ones (see storage/local.py).
    fs_calls: str = "auto"
    site_exec: tuple[SiteExecCommand, ...] = ()
    # --- FTPS (RFC 4217) ---
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Make a throwaway self-signed certificate at start (quick tests, not production).
    tls_self_signed: bool = False
    #: No login and no transfer without TLS.
    tls_required: bool = False
    #: A second listener speaking TLS from the first byte (implicit FTPS).
    tls_implicit_port: int | None = None
    #: PROT P data connections must resume the control connection's TLS session.
    tls_session_reuse: bool = True
    # --- limits and the brute-force defender ---
    max_sessions: int = 2000
    max_sessions_per_ip: int = 200
    #: Sustained commands per second per session; bursts up to twice this.
    max_commands_per_second: float = 5000.0
    #: An unauthenticated connection is closed after this long.
    login_timeout: float = 60.0
    #: Failed logins from one address within ``ban_window`` that trigger a ban.
    ban_threshold: int = 5
    ban_window: float = 600.0
    #: First ban length; each further ban of the same address doubles it.
    ban_time: float = 900.0
    ban_max_time: float = 86400.0
    # --- accounts ---
    #: The SQLite user database that ``fileferry user`` manages; ``None``: none.
    db: str | None = None
    #: Bytes per second for all sessions together, each direction; 0 = unlimited.
    upload_rate: int = 0
    download_rate: int = 0
    # --- scaling ---
    #: Processes sharing the listening port (SO_REUSEPORT), each with its own
    #: event loop and its own slice of ``passive_ports``.
    workers: int = 1


#: Keys a TOML file or FILEFERRY_* variable may set (``users`` is TOML only).
_SCALARS = {f.name for f in fields(ServerConfig) if f.name not in ("users", "site_exec")}


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


def parse_port_range(text: str, key: str = "passive_ports") -> tuple[int, int]:
    lo_text, sep, hi_text = str(text).partition("-")
    try:
        lo, hi = int(lo_text), int(hi_text)
    except ValueError:
        raise ConfigError(f"{key}: expected LO-HI, got {text!r}") from None
    if not sep or not 1024 <= lo <= hi <= 65535:
        raise ConfigError(f"{key}: expected LO-HI with 1024 <= LO <= HI <= 65535, got {text!r}")
    return lo, hi


def _as_bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def _as_number(key: str, value: object, kind: type[int] | type[float]) -> int | float:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    try:
        return kind(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a number, got {value!r}") from None


_BOOLS = {
    "anonymous",
    "write",
    "fsync_uploads",
    "tls_self_signed",
    "tls_required",
    "tls_session_reuse",
}
_INTS = {
    "port",
    "max_line",
    "max_list_entries",
    "tls_implicit_port",
    "max_sessions",
    "max_sessions_per_ip",
    "ban_threshold",
    "workers",
}
_FLOATS = {
    "login_failure_delay",
    "max_commands_per_second",
    "ban_window",
    "ban_time",
    "ban_max_time",
}


def _coerce(key: str, value: object) -> object:
    """Turn a TOML or environment value into the field's type, or fail clearly."""
    if key in _BOOLS:
        return _as_bool(key, value)
    if key in _INTS:
        return _as_number(key, value, int)
    if key in _FLOATS or key.endswith("timeout"):
        return _as_number(key, value, float)
    if key == "passive_ports":
        if isinstance(value, list) and len(value) == 2:
            value = f"{value[0]}-{value[1]}"
        return parse_port_range(str(value))
    if key in ("upload_rate", "download_rate"):
        return account_fields.parse_size(value, key)
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected text, got {value!r}")
    return value


def _users_from_toml(items: object, source: str) -> tuple[UserConfig, ...]:
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
            pw_hash = str(item["password_hash"])
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
                write=_as_bool(f"{where}: write", item.get("write", True)),
                site_exec=_as_bool(f"{where}: site_exec", item.get("site_exec", False)),
                account_fields=tuple(account_fields.account_fields_from_toml(item, where).items()),
            )
        )
    return tuple(users)


_SITE_EXEC_KEYS = {"argv", "args", "timeout", "max_output", "description"}


def _site_exec_from_toml(table: object, source: str) -> tuple[SiteExecCommand, ...]:
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
        timeout = _as_number(f"{where}.timeout", item.get("timeout", 10.0), float)
        max_output = _as_number(f"{where}.max_output", item.get("max_output", 65536), int)
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


def load_toml(path: str) -> dict[str, object]:
    """Read a config file into field values; unknown keys are errors."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: invalid TOML ({exc})") from None
    values: dict[str, object] = {}
    for key, value in data.items():
        norm = key.replace("-", "_")
        if norm == "user":
            values["users"] = _users_from_toml(value, path)
        elif norm == "site_exec":
            values["site_exec"] = _site_exec_from_toml(value, path)
        elif norm in _SCALARS:
            values[norm] = _coerce(norm, value)
        else:
            raise ConfigError(f"{path}: unknown key {key!r}")
    return values


def from_environment(environ: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for name, value in environ.items():
        if not name.startswith("FILEFERRY_"):
            continue
        key = name[len("FILEFERRY_") :].lower()
        if key in _SCALARS:
            values[key] = _coerce(key, value)
        elif key not in ("password", "no_uvloop"):
            # FILEFERRY_PASSWORD belongs to the client; FILEFERRY_NO_UVLOOP is
            # read where the event loop is chosen (server/eventloop.py).
            raise ConfigError(f"environment variable {name}: unknown setting")
    return values


def build(*layers: Mapping[str, object]) -> ServerConfig:
    """Merge layers (lowest precedence first) and validate the result."""
    merged: dict[str, object] = {}
    for layer in layers:
        for key, value in layer.items():
            if key == "users" and merged.get("users"):
                value = tuple(merged["users"]) + tuple(value)  # type: ignore[call-overload]
            merged[key] = value
    cfg = replace(ServerConfig(), **merged)  # type: ignore[arg-type]
    return validate(cfg)


def _validate_tls_and_limits(cfg: ServerConfig) -> None:
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise ConfigError("tls_cert and tls_key: give both or neither")
    if cfg.tls_cert is not None and cfg.tls_self_signed:
        raise ConfigError("tls_self_signed: not together with tls_cert/tls_key")
    has_tls = cfg.tls_cert is not None or cfg.tls_self_signed
    if cfg.tls_required and not has_tls:
        raise ConfigError("tls_required: needs tls_cert and tls_key (or tls_self_signed)")
    if cfg.tls_implicit_port is not None:
        if not has_tls:
            raise ConfigError("tls_implicit_port: needs tls_cert and tls_key (or tls_self_signed)")
        if not 0 <= cfg.tls_implicit_port <= 65535:
            raise ConfigError(f"tls_implicit_port: {cfg.tls_implicit_port} is not a port")
    for key in ("max_sessions", "max_sessions_per_ip", "ban_threshold"):
        if not 1 <= getattr(cfg, key) <= 1_000_000:
            raise ConfigError(f"{key}: must be between 1 and 1000000")
    if not 1 <= cfg.max_commands_per_second <= 1_000_000:
        raise ConfigError("max_commands_per_second: must be between 1 and 1000000")
    for key in ("login_timeout", "ban_window", "ban_time", "ban_max_time"):
        if not 0 < getattr(cfg, key) <= 30 * 86400:
            raise ConfigError(f"{key}: must be between 0 and 2592000 seconds")


def validate(cfg: ServerConfig) -> ServerConfig:
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"root: {cfg.root!r} is not a directory")
    if not 0 <= cfg.port <= 65535:
        raise ConfigError(f"port: {cfg.port} is not between 0 and 65535")
    try:
        ipaddress.ip_address(cfg.host.split("%", 1)[0])
    except ValueError:
        if cfg.host != "localhost":
            raise ConfigError(f"host: {cfg.host!r} is not an IP address") from None
    if cfg.masquerade_address is not None:
        try:
            ipaddress.IPv4Address(cfg.masquerade_address)
        except ValueError:
            raise ConfigError(
                f"masquerade_address: {cfg.masquerade_address!r} is not an IPv4 address"
            ) from None
    for key in ("idle_timeout", "data_timeout", "accept_timeout"):
        if not 0 < getattr(cfg, key) <= 86400:
            raise ConfigError(f"{key}: must be between 0 and 86400 seconds")
    if not 0 <= cfg.login_failure_delay <= 60:
        raise ConfigError("login_failure_delay: must be between 0 and 60 seconds")
    if cfg.fs_calls not in FS_CALLS:
        raise ConfigError(f"fs_calls: expected one of {', '.join(FS_CALLS)}")
    if cfg.log_level.lower() not in LOG_LEVELS:
        raise ConfigError(f"log_level: expected one of {', '.join(LOG_LEVELS)}")
    if not 512 <= cfg.max_line <= 65536:
        raise ConfigError("max_line: must be between 512 and 65536")
    _validate_tls_and_limits(cfg)
    _validate_workers(cfg)
    names = [u.name for u in cfg.users]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"user {sorted(dupes)[0]!r} is defined twice")
    for user in cfg.users:
        if user.home is not None and not Path(user.home).expanduser().is_dir():
            raise ConfigError(f"user {user.name!r}: home {user.home!r} is not a directory")
    db = _validate_accounts(cfg, root)
    return replace(cfg, root=str(root.resolve()), log_level=cfg.log_level.lower(), db=db)


def _validate_workers(cfg: ServerConfig) -> None:
    """Each worker needs at least one passive port of its own."""
    if not 1 <= cfg.workers <= 64:
        raise ConfigError(f"workers: {cfg.workers} is not between 1 and 64")
    if cfg.passive_ports is not None and cfg.workers > 1:
        lo, hi = cfg.passive_ports
        if hi - lo + 1 < cfg.workers:
            raise ConfigError(
                f"passive_ports: {lo}-{hi} has fewer ports than the {cfg.workers} workers"
            )


def _validate_accounts(cfg: ServerConfig, root: Path) -> str | None:
    """Virtual folders must exist; the database must exist and never lie where
    a client could download it. Returns the database's absolute path."""
    for user in cfg.users:
        folders = dict(user.account_fields).get("virtual_folders", ())
        for folder in folders:  # type: ignore[attr-defined]
            if not Path(folder.source).is_dir():
                raise ConfigError(
                    f"user {user.name!r}: virtual folder {folder.path}: {folder.source!r}"
                    " is not a directory"
                )
    if cfg.db is None:
        return None
    db = Path(cfg.db).expanduser().absolute()
    if not db.is_file():
        raise ConfigError(
            f"db: {cfg.db!r} does not exist; create it with: fileferry user add --db {cfg.db} NAME"
        )
    served = [root] + [Path(u.home).expanduser() for u in cfg.users if u.home]
    real = db.resolve()
    for folder in served:
        if real.is_relative_to(folder.resolve()):
            raise ConfigError(
                f"db: {cfg.db!r} is inside the served folder {str(folder)!r}; keep the user"
                " database elsewhere (default: ~/.local/share/fileferry/users.db)"
            )
    return str(db)
