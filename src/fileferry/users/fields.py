"""Account fields as operators write them: parsing, checking and showing.

The TOML ``[[user]]`` tables and the ``fileferry user`` options take the same
values in the same spellings (``10G``, ``/in=elw``, ``10.0.0.0/8``,
``2025-12-31``), so both go through this one module, and a bad value gets
the same one-line error naming the field wherever it was written.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from fileferry import paths
from fileferry.errors import ConfigError
from fileferry.users.base import KNOWN_LETTERS, Account, FolderRule, VirtualFolder

#: ``[[user]]`` keys that set :class:`Account` fields (besides name, password, home).
ACCOUNT_KEYS = (
    "permissions",
    "folder_permissions",
    "virtual_folders",
    "quota_bytes",
    "quota_files",
    "max_sessions",
    "upload_rate",
    "download_rate",
    "allowed_networks",
    "expires",
    "disabled",
)

#: Names that mean anonymous FTP; a stored account may not take them.
RESERVED_NAMES = frozenset({"anonymous", "ftp"})

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tib": 1024**4,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
_MAX_NUMBER = 2**62


def check_name(name: str, where: str = "name") -> str:
    """A user name FTP can carry: printable, no spaces, at most 64 characters."""
    if not name or not name.isprintable() or " " in name or len(name) > 64:
        raise ConfigError(f"{where}: user name {name!r} is not allowed")
    return name


def check_new_name(name: str, where: str = "name") -> str:
    """A name for a new account: :func:`check_name`, and no ``:``.

    Clients split ``user:password`` at the first colon (``ftp://`` URLs,
    ``curl -u``, ``--user NAME:PASSWORD``), so most could never log in as
    such a user. Only new names are refused: an account made before this
    rule can still be changed, disabled or deleted.
    """
    check_name(name, where)
    if ":" in name:
        raise ConfigError(f"{where}: user name {name!r} may not contain ':'")
    return name


def parse_size(value: object, key: str) -> int:
    """Bytes from ``1048576``, ``"10G"`` (binary units) or ``"10GB"`` (decimal); 0 = no limit."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a size such as 500M or 10G, got {value!r}")
    if isinstance(value, int):
        number: float = value
    else:
        m = _SIZE.fullmatch(str(value).strip().lower())
        if m is None or m[2] not in _UNITS:
            raise ConfigError(f"{key}: expected a size such as 500M or 10G, got {value!r}")
        number = float(m[1]) * _UNITS[m[2]]
    if not 0 <= number <= _MAX_NUMBER:
        raise ConfigError(f"{key}: must be between 0 and {_MAX_NUMBER}")
    return int(number)


def parse_count(value: object, key: str) -> int:
    """A non-negative whole number; 0 = no limit."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a whole number, got {value!r}")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ConfigError(f"{key}: expected a whole number, got {value!r}") from None
    if not 0 <= number <= _MAX_NUMBER:
        raise ConfigError(f"{key}: must be between 0 and {_MAX_NUMBER}")
    return number


def parse_permissions(value: object, key: str = "permissions") -> str:
    """Letters from ``elradfmwMTX``, in that canonical order; ``""`` grants nothing."""
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected letters from {KNOWN_LETTERS}, got {value!r}")
    unknown = sorted(set(value) - set(KNOWN_LETTERS))
    if unknown:
        raise ConfigError(
            f"{key}: unknown permission letter {unknown[0]!r} (known: {KNOWN_LETTERS})"
        )
    return "".join(c for c in KNOWN_LETTERS if c in value)


def virtual_path(value: object, key: str, *, allow_root: bool = True) -> str:
    """A normalised absolute virtual path; ``..`` and odd characters are refused."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(f"{key}: expected an absolute path such as /incoming, got {value!r}")
    if "/../" in value + "/" or "/./" in value + "/":
        raise ConfigError(f"{key}: path {value!r} may not contain . or .. components")
    try:
        path = paths.resolve("/", value)
    except paths.PathError as exc:
        raise ConfigError(f"{key}: {exc}: {value!r}") from None
    if path == "/" and not allow_root:
        raise ConfigError(f"{key}: cannot be the root folder /")
    return path


def parse_folder_rule(text: str, key: str = "folder permission") -> FolderRule:
    """``/path=letters`` (letters may be empty: nothing is allowed there)."""
    path, sep, letters = text.partition("=")
    if not sep:
        raise ConfigError(f"{key}: expected /PATH=LETTERS, got {text!r}")
    return FolderRule(virtual_path(path.strip(), key), parse_permissions(letters.strip(), key))


def host_directory(value: object, key: str) -> str:
    """An absolute host path (``~`` expanded); existence is checked where it is used.

    A storage URL (``s3://bucket/prefix``) is kept as it is: the backend of
    its scheme checks it where it is opened.
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: expected a directory path, got {value!r}")
    if _URL.match(value.strip()):
        url = value.strip()
        if "\0" in url or any(ch.isspace() for ch in url):
            raise ConfigError(f"{key}: {url!r} is not a storage URL")
        return url
    path = os.path.abspath(os.path.expanduser(value))
    if "\0" in path:
        raise ConfigError(f"{key}: path contains a NUL character")
    return path


_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")


def parse_virtual_folder(text: str, key: str = "virtual folder") -> VirtualFolder:
    """``/vpath=/host/dir`` for read/write, ``/vpath=/host/dir:ro`` for read-only."""
    path, sep, source = text.partition("=")
    if not sep:
        raise ConfigError(f"{key}: expected /PATH=DIRECTORY[:ro], got {text!r}")
    read_only = False
    if source.endswith((":ro", ":rw")):
        read_only = source.endswith(":ro")
        source = source[:-3]
    return VirtualFolder(
        virtual_path(path.strip(), key, allow_root=False), host_directory(source, key), read_only
    )


def parse_network(value: object, key: str = "allowed network") -> str:
    """A CIDR network (a bare address is a /32 or /128), normalised."""
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a network such as 192.168.1.0/24, got {value!r}")
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ConfigError(f"{key}: {value!r} is not a network such as 10.0.0.0/8") from None
    if network.network_address != ipaddress.ip_address(value.strip().partition("/")[0]):
        # 10.1.2.3/8 is a typo for a host (/32) or a network (10.0.0.0/8): allowing
        # all of 10/8 in silence could let in far more than was meant.
        raise ConfigError(f"{key}: {value!r} has host bits set; did you mean {network}?")
    return str(network)


def parse_expiry(value: object, key: str = "expires") -> float | None:
    """Unix time from a date (usable through that day, UTC) or a date-time; never/none = no expiry.

    TOML's own date and date-time values are accepted as well as ISO text.
    A date-time without a zone is taken as UTC.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "never", "none")):
        return None
    when: dt.datetime
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        when = dt.datetime.combine(value + dt.timedelta(days=1), dt.time())
    elif isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                day = dt.date.fromisoformat(text)
                when = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
            else:
                when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"{key}: expected a date (2025-12-31), a date-time or 'never', got {value!r}"
            ) from None
    else:
        raise ConfigError(f"{key}: expected a date such as 2025-12-31, got {value!r}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def format_expiry(expires: float | None) -> str:
    if expires is None:
        return "never"
    return dt.datetime.fromtimestamp(expires, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_size(n: int) -> str:
    """``1.5 GiB``-style text for people; exact byte counts go in JSON."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _as_bool(value: object, key: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def check_account(account: Account) -> Account:
    """Validate every field and return the account in canonical form.

    Stores call this before writing, so nothing malformed reaches a server
    however the account was made.
    """
    check_name(account.name)
    home = host_directory(account.home, "home")
    rules: dict[str, FolderRule] = {}
    for rule in account.folder_permissions:
        path = virtual_path(rule.path, "folder permission")
        if path in rules:
            raise ConfigError(f"folder permission: {path} is given twice")
        rules[path] = FolderRule(path, parse_permissions(rule.permissions, f"folder {path}"))
    folders: dict[str, VirtualFolder] = {}
    for folder in account.virtual_folders:
        path = virtual_path(folder.path, "virtual folder", allow_root=False)
        if path in folders:
            raise ConfigError(f"virtual folder: {path} is mounted twice")
        source = host_directory(folder.source, f"virtual folder {path}")
        folders[path] = VirtualFolder(path, source, bool(folder.read_only))
    expires = account.expires
    if expires is not None and not isinstance(expires, int | float):
        raise ConfigError(f"expires: expected a time, got {expires!r}")
    return replace(
        account,
        home=home,
        permissions=parse_permissions(account.permissions),
        folder_permissions=tuple(sorted(rules.values(), key=lambda r: r.path)),
        virtual_folders=tuple(sorted(folders.values(), key=lambda f: f.path)),
        quota_bytes=parse_count(account.quota_bytes, "quota_bytes"),
        quota_files=parse_count(account.quota_files, "quota_files"),
        max_sessions=parse_count(account.max_sessions, "max_sessions"),
        upload_rate=parse_count(account.upload_rate, "upload_rate"),
        download_rate=parse_count(account.download_rate, "download_rate"),
        allowed_networks=tuple(
            dict.fromkeys(parse_network(n, "allowed_networks") for n in account.allowed_networks)
        ),
        expires=None if expires is None else float(expires),
        disabled=bool(account.disabled),
    )


def account_fields_from_toml(item: Mapping[str, Any], where: str) -> dict[str, object]:
    """:class:`Account` keyword arguments from the account keys of a ``[[user]]`` table."""
    out: dict[str, object] = {}
    for key in ACCOUNT_KEYS:
        if key not in item:
            continue
        value = item[key]
        at = f"{where}: {key}"
        if key == "permissions":
            out[key] = parse_permissions(value, at)
        elif key == "folder_permissions":
            if not isinstance(value, dict):
                raise ConfigError(f'{at}: expected a table such as {{ "/in" = "elw" }}')
            out[key] = tuple(
                FolderRule(virtual_path(p, at), parse_permissions(v, f"{at} {p}"))
                for p, v in value.items()
            )
        elif key == "virtual_folders":
            out[key] = tuple(_virtual_folder_from_toml(v, at) for v in _list(value, at))
        elif key in ("quota_bytes", "upload_rate", "download_rate"):
            out[key] = parse_size(value, at)
        elif key in ("quota_files", "max_sessions"):
            out[key] = parse_count(value, at)
        elif key == "allowed_networks":
            out[key] = tuple(parse_network(v, at) for v in _list(value, at))
        elif key == "expires":
            out[key] = parse_expiry(value, at)
        else:
            out[key] = _as_bool(value, at)
    return out


def _list(value: object, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list")
    return value


def _virtual_folder_from_toml(value: object, key: str) -> VirtualFolder:
    if not isinstance(value, dict):
        raise ConfigError(f'{key}: expected tables such as {{ path = "/x", source = "/srv/x" }}')
    unknown = set(value) - {"path", "source", "read_only"}
    if unknown:
        raise ConfigError(f"{key}: unknown key {sorted(unknown)[0]!r}")
    if "path" not in value or "source" not in value:
        raise ConfigError(f"{key}: 'path' and 'source' are required")
    return VirtualFolder(
        virtual_path(value["path"], key, allow_root=False),
        host_directory(value["source"], key),
        _as_bool(value.get("read_only", False), f"{key}: read_only"),
    )


def account_to_dict(account: Account) -> dict[str, object]:
    """Plain JSON-ready values (exact numbers, ISO expiry) for ``--json`` output."""
    return {
        "name": account.name,
        "home": account.home,
        "permissions": account.permissions,
        "folder_permissions": {r.path: r.permissions for r in account.folder_permissions},
        "virtual_folders": [
            {"path": f.path, "source": f.source, "read_only": f.read_only}
            for f in account.virtual_folders
        ],
        "quota_bytes": account.quota_bytes,
        "quota_files": account.quota_files,
        "max_sessions": account.max_sessions,
        "upload_rate": account.upload_rate,
        "download_rate": account.download_rate,
        "allowed_networks": list(account.allowed_networks),
        "expires": None if account.expires is None else format_expiry(account.expires),
        "disabled": account.disabled,
    }
