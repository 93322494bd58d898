"""Layers of settings from a TOML file and the environment, merged into one config.

Precedence, lowest first: built-in defaults, the ``--config`` TOML file,
``FILEFERRY_*`` environment variables, command-line flags. A layer is a dict
of flat keys (plus ``users`` and ``site_exec``); every value is checked once,
at start, and an unknown key or a bad value raises :class:`ConfigError`
naming the key, so the operator sees one clear line instead of a traceback
at the first connection.

One exception: an unknown ``FILEFERRY_*`` *variable* is only warned about.
The environment is shared with every other program (a wrapper script's own
``FILEFERRY_BIN``, a container's variables), so a name fileferry does not
know is not necessarily a mistake; a config file is fileferry's alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import cast

from fileferry.config.hooks import hooks_from_toml
from fileferry.config.model import ServerConfig
from fileferry.config.schema import NESTED, SECTIONS, SETTINGS, assemble
from fileferry.config.tables import site_exec_from_toml, users_from_toml
from fileferry.config.validate import validate
from fileferry.errors import ConfigError

#: FILEFERRY_* variables read elsewhere: the client's password, the event loop choice
#: and the list of imported modules ``fileferry serve`` writes for a test.
_FOREIGN_VARIABLES = ("FILEFERRY_PASSWORD", "FILEFERRY_NO_UVLOOP", "FILEFERRY_DEBUG_MODULES")


def load_toml(path: str) -> dict[str, object]:
    """Read a config file into flat values; unknown keys are errors.

    Settings may be flat (``tls_cert = ...``) or in their section's table
    (``[tls]`` ``cert = ...``); both spellings end up under the flat key.
    """
    # Imported here: a server configured by flags alone never loads a TOML parser.
    import tomllib

    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: invalid TOML ({exc})") from None
    values: dict[str, object] = {}
    _read_table(data, "", path, values)
    return values


def _read_table(
    table: Mapping[str, object], prefix: str, path: str, values: dict[str, object]
) -> None:
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        dotted = prefix + key
        if not prefix and key == "user":
            values["users"] = users_from_toml(value, path)
        elif not prefix and key == "site_exec":
            values["site_exec"] = site_exec_from_toml(value, path)
        elif not prefix and key == "hook":
            values["hooks"] = hooks_from_toml(value, path)
        elif not prefix and key in SETTINGS:
            if key in values:
                raise ConfigError(f"{path}: {key!r} is set twice (flat and in its table)")
            values[key] = SETTINGS[key].coerce(value)
        elif dotted in NESTED:
            flat = NESTED[dotted]
            if flat in values:
                raise ConfigError(f"{path}: {flat!r} is set twice (flat and in its table)")
            values[flat] = SETTINGS[flat].coerce(value)
        elif dotted in SECTIONS and isinstance(value, dict):
            _read_table(value, dotted + ".", path, values)
        else:
            raise ConfigError(f"{path}: unknown key {dotted if prefix else raw_key!r}")


def from_environment(
    environ: Mapping[str, str], warn: Callable[[str], None] | None = None
) -> dict[str, object]:
    """Flat values from ``FILEFERRY_<KEY>`` variables.

    A variable that names no setting is skipped, and ``warn`` is told once
    about each (with the setting it most looks like, for typos); a bad value
    of a known one is still a ConfigError.
    """
    values: dict[str, object] = {}
    for name, value in environ.items():
        if not name.startswith("FILEFERRY_") or name in _FOREIGN_VARIABLES:
            continue
        key = name[len("FILEFERRY_") :].lower()
        if key not in SETTINGS:
            if warn is not None:
                warn(_unknown_variable(name))
            continue
        values[key] = SETTINGS[key].coerce(value)
    return values


def _unknown_variable(name: str) -> str:
    # Compared without the common prefix, which would make every name look close.
    import difflib  # only for a misspelt variable

    key = name[len("FILEFERRY_") :].lower()
    close = difflib.get_close_matches(key, list(SETTINGS), n=1, cutoff=0.8)
    hint = f" (did you mean {SETTINGS[close[0]].meta.env}?)" if close else ""
    return f"environment variable {name} is not a fileferry setting{hint}; ignored"


def build(*layers: Mapping[str, object]) -> ServerConfig:
    """Merge layers of flat values (lowest precedence first) and validate the result.

    Users add up across layers (a file's ``[[user]]`` and ``--user``); every
    other key is replaced by the higher layer.
    """
    merged: dict[str, object] = {}
    for layer in layers:
        for key, value in layer.items():
            if key == "users" and merged.get("users"):
                value = (
                    *cast("tuple[object, ...]", merged["users"]),
                    *cast("tuple[object, ...]", value),
                )
            elif key == "hooks" and isinstance(value, list):
                value = hooks_from_toml(value, "hooks")  # from code: TOML tables as dicts
            elif key in SETTINGS and value is not None:
                value = SETTINGS[key].coerce(value)  # values from code need not be typed
            merged[key] = value
    return validate(assemble(merged))
