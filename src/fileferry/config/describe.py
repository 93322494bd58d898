"""How one setting is described, and how a raw value becomes its typed value.

A setting is a dataclass field of the configuration tree whose metadata
holds a :class:`Setting`: its flat key (the TOML key, and ``FILEFERRY_KEY``
in the environment), its command-line flag and help, and its bounds. The
field's type hint says how text or TOML values are coerced, so there is no
hand-kept list of which keys are booleans or numbers: adding a field with a
:func:`setting` is all it takes for the file, the environment and the flags
to know it.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from fileferry.errors import ConfigError

#: A custom parser: (raw value, key for messages) -> typed value.
Parser = Callable[[object, str], object]


@dataclass(frozen=True, slots=True)
class Setting:
    """What the generated TOML key, variable and flag of one field look like."""

    #: The flat TOML key; ``FILEFERRY_`` + its upper case is the variable.
    key: str
    #: Help for ``--flag``; a setting without it has no command-line flag.
    help: str | None = None
    metavar: str | None = None
    #: Title of the ``serve --help`` group the flag is listed in.
    group: str | None = None
    #: Booleans: ``--x/--no-x`` rather than a plain ``--x`` that switches it on.
    toggle: bool = False
    #: Inclusive bounds checked at start; ``open_low`` makes the low one exclusive.
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    unit: str = ""
    #: Replaces the coercion derived from the type (sizes like ``"10M"``).
    parse: Parser | None = None
    #: A list: the flag may be given several times (each adds to it).
    repeatable: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def env(self) -> str:
        return "FILEFERRY_" + self.key.upper()


def setting(default: Any, key: str, help: str | None = None, **options: Any) -> Any:
    """A dataclass field described by a :class:`Setting` (see the module docstring)."""
    return field(default=default, metadata={"setting": Setting(key, help, **options)})


# --- coercion from the type hint ---------------------------------------------------------


def as_bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def as_number(key: str, value: object, kind: type[int] | type[float]) -> int | float:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    try:
        return kind(cast(Any, value))
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected a number, got {value!r}") from None


def parse_port_range(text: object, key: str = "passive_ports") -> tuple[int, int]:
    """``LO-HI`` (or a two-element TOML list) with 1024 <= LO <= HI <= 65535."""
    if isinstance(text, (list, tuple)) and len(text) == 2:
        text = f"{text[0]}-{text[1]}"
    lo_text, sep, hi_text = str(text).partition("-")
    try:
        lo, hi = int(lo_text), int(hi_text)
    except ValueError:
        raise ConfigError(f"{key}: expected LO-HI, got {text!r}") from None
    if not sep or not 1024 <= lo <= hi <= 65535:
        raise ConfigError(f"{key}: expected LO-HI with 1024 <= LO <= HI <= 65535, got {text!r}")
    return lo, hi


def choices_of(hint: Any) -> tuple[str, ...] | None:
    """The allowed strings of a ``Literal[...]`` hint (``None`` for other types)."""
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else None


def strip_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def coercer(hint: Any, meta: Setting) -> Callable[[object], object]:
    """A function turning a TOML, environment or flag value into the field's type."""
    key = meta.key
    if meta.parse is not None:
        parse = meta.parse
        return lambda value: parse(value, key)
    hint = strip_optional(hint)
    choices = choices_of(hint)
    if choices is not None:

        def choice(value: object) -> object:
            text = str(value).lower() if isinstance(value, str) else None
            if text not in choices:
                raise ConfigError(f"{key}: expected one of {', '.join(choices)}")
            return text

        return choice
    if hint is bool:
        return lambda value: as_bool(key, value)
    if hint is int or hint is float:
        return lambda value: as_number(key, value, hint)
    if hint == tuple[int, int]:
        return lambda value: parse_port_range(value, key)
    if hint is str:

        def text(value: object) -> object:
            if not isinstance(value, str):
                raise ConfigError(f"{key}: expected text, got {value!r}")
            return value

        return text
    raise TypeError(f"{key}: no coercion for {hint!r}")  # a programming error, found by tests


def check_bounds(meta: Setting, value: object) -> None:
    """The bounds of ``meta`` (if any) hold for ``value``, or a ConfigError names the key.

    The message names the bound that was crossed ("must be more than 0
    seconds"), not the whole range: "not between 0 and 86400" for a 0 reads
    as if 0 were allowed.
    """
    if value is None or (meta.low is None and meta.high is None):
        return
    number = float(value)  # type: ignore[arg-type]
    unit = f" {meta.unit}" if meta.unit else ""
    if meta.low is not None and meta.open_low and number <= meta.low:
        bound = f"more than {_figure(meta.low)}"
    elif meta.low is not None and number < meta.low:
        bound = f"at least {_figure(meta.low)}"
    elif meta.high is not None and number > meta.high:
        bound = f"at most {_figure(meta.high)}"
    else:
        return
    raise ConfigError(f"{meta.key}: must be {bound}{unit}, got {_figure(number)}")


def _figure(number: float) -> str:
    """``0`` rather than ``0.0``, ``1000000000`` rather than ``1e+09``."""
    return str(int(number)) if float(number).is_integer() else str(number)
