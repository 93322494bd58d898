"""Account fields from a web form or a JSON body, by ``fileferry user``'s own rules.

Every value goes through :mod:`fileferry.users.fields` (the parsers the
TOML ``[[user]]`` tables and ``fileferry user`` use), one field at a time so
that each error lands next to its field; the folder rules (the home must be
a folder, no served folder may hold the user database) are the CLI's
:func:`~fileferry.cli.user.check_folders`. A form's text areas (one rule per
line) are turned into the TOML shapes first, so a form and a JSON body are
one code path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from fileferry.cli.user import UsageError, check_folders
from fileferry.errors import ConfigError
from fileferry.users import fields
from fileferry.users.base import KNOWN_LETTERS, Account

#: What each permission letter allows, shown next to the boxes.
LETTERS: dict[str, str] = {
    "e": "change directory",
    "l": "list",
    "r": "download",
    "a": "append",
    "d": "delete",
    "f": "rename",
    "m": "make directories",
    "w": "upload",
    "M": "chmod",
    "T": "set modification time",
    "X": "SITE EXEC",
}
assert "".join(LETTERS) == KNOWN_LETTERS

#: Keys a JSON body may carry besides the account fields.
EXTRA_KEYS = frozenset({"name", "home", "password"})
#: Longest text a field may hold; a form is small, a bigger one is an attack or a mistake.
MAX_VALUE = 64 * 1024


@dataclass
class Parsed:
    """An account (``None`` if any field was wrong) and the errors by field name."""

    account: Account | None
    errors: dict[str, str] = field(default_factory=dict)


def _message(exc: Exception) -> str:
    return str(exc).lstrip(": ").strip()


def _field_of(message: str) -> str:
    """The form field a ``check_account`` message is about (it starts with its name)."""
    head = message.split(":", 1)[0]
    if head.startswith("folder"):
        return "folder_permissions"
    if head.startswith("virtual folder"):
        return "virtual_folders"
    key = head.replace(" ", "_")
    return key if key in fields.ACCOUNT_KEYS else "home"


def form_to_fields(form: Mapping[str, Any], permissions: list[str]) -> dict[str, object]:
    """A submitted form's values in the JSON/TOML shapes (text areas split by line)."""

    def lines(key: str) -> list[str]:
        return [ln.strip() for ln in str(form.get(key, "")).splitlines() if ln.strip()]

    out: dict[str, object] = {"permissions": "".join(permissions)}
    rules: dict[str, str] = {}
    for line in lines("folder_permissions"):
        path, sep, letters = line.partition("=")
        rules[path.strip()] = letters.strip() if sep else "\0"  # \0: flagged as bad below
    out["folder_permissions"] = rules
    folders = []
    for line in lines("virtual_folders"):
        path, sep, source = line.partition("=")
        read_only = source.endswith(":ro")
        if source.endswith((":ro", ":rw")):
            source = source[:-3]
        folders.append(
            {"path": path.strip(), "source": source.strip() if sep else "", "read_only": read_only}
        )
    out["virtual_folders"] = folders
    out["allowed_networks"] = lines("allowed_networks")
    for key in ("quota_bytes", "quota_files", "max_sessions", "upload_rate", "download_rate"):
        out[key] = str(form.get(key, "") or "0").strip()
    out["expires"] = str(form.get("expires", "") or "never").strip()
    out["disabled"] = form.get("disabled") in ("on", "true", "1")
    for key in ("home", "name"):
        if key in form:
            out[key] = str(form[key]).strip()
    return out


def parse_account(
    values: Mapping[str, object], base: Account | None, db: str, *, adding: bool
) -> Parsed:
    """Apply ``values`` to ``base`` (or make a new account); every error by field."""
    errors: dict[str, str] = {}
    unknown = sorted(set(values) - set(fields.ACCOUNT_KEYS) - EXTRA_KEYS)
    for key in unknown:
        errors[key] = f"unknown field {key!r}"
    for key, value in values.items():
        if isinstance(value, str) and len(value) > MAX_VALUE:
            errors[key] = "too long"
    if errors:
        return Parsed(None, errors)
    changes: dict[str, object] = {}
    for key in fields.ACCOUNT_KEYS:
        if key not in values:
            continue
        value = values[key]
        if key == "folder_permissions" and isinstance(value, dict) and "\0" in value.values():
            errors[key] = "expected /PATH=LETTERS on each line"
            continue
        try:
            changes.update(fields.account_fields_from_toml({key: value}, ""))
        except ConfigError as exc:
            errors[key] = _message(exc)
    name = base.name if base is not None else ""
    if adding:
        try:
            name = fields.check_new_name(str(values.get("name", "")), "name")
            if name.lower() in fields.RESERVED_NAMES:
                raise ConfigError(f"name: {name!r} is reserved for anonymous FTP")
        except ConfigError as exc:
            errors["name"] = _message(exc)
    home = base.home if base is not None else ""
    if "home" in values or adding:
        try:
            home = fields.host_directory(values.get("home", ""), "home")
        except ConfigError as exc:
            errors["home"] = _message(exc)
    if errors:
        return Parsed(None, errors)
    account = base if base is not None else Account(name=name, home=home)
    try:
        account = fields.check_account(replace(account, home=home, **changes))  # type: ignore[arg-type]
    except ConfigError as exc:
        text = _message(exc)
        errors[_field_of(text)] = text
        return Parsed(None, errors)
    try:
        check_folders(account, db, may_make_home=adding)
    except UsageError as exc:
        where = "virtual_folders" if str(exc).startswith("virtual folder") else "home"
        errors[where] = str(exc)
        return Parsed(None, errors)
    return Parsed(account)
