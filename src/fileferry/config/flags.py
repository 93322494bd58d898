"""The ``serve`` command-line flags, generated from the settings' description.

A setting with help text gets ``--its-key``; booleans are switches (or
``--x/--no-x`` toggles), ``Literal`` types become choices, and any other
value goes through the same coercion as the TOML file and the environment,
so a bad value is one argparse error naming the flag. Every default is
``None`` so that only the flags actually given override the file and the
environment.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from fileferry.config.describe import choices_of, strip_optional
from fileferry.config.schema import SETTINGS, Leaf
from fileferry.errors import ConfigError


def _argument_type(leaf: Leaf) -> Callable[[str], object]:
    def convert(text: str) -> object:
        try:
            return leaf.coerce(text)
        except ConfigError as exc:
            # argparse names the flag; keep only what is wrong with the value.
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{leaf.meta.key}: ")) from None

    return convert


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """Add a flag for every described setting that has help text."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for key, leaf in SETTINGS.items():
        meta = leaf.meta
        if meta.help is None:
            continue
        target: argparse.ArgumentParser | argparse._ArgumentGroup = parser
        if meta.group is not None:
            if meta.group not in groups:
                groups[meta.group] = parser.add_argument_group(meta.group)
            target = groups[meta.group]
        options: dict[str, object] = {"dest": key, "default": None, "help": meta.help}
        hint = strip_optional(leaf.hint)
        choices = choices_of(hint)
        if hint is bool:
            options["action"] = argparse.BooleanOptionalAction if meta.toggle else "store_true"
        elif choices is not None:
            options["choices"] = choices
        else:
            options["type"] = _argument_type(leaf)
            options["metavar"] = meta.metavar
            if meta.repeatable:
                options["action"] = "append"
        target.add_argument(meta.flag, **options)  # type: ignore[arg-type]


def flag_values(args: argparse.Namespace) -> dict[str, object]:
    """The settings given as flags, by flat key."""
    values: dict[str, object] = {}
    for key in SETTINGS:
        value = getattr(args, key, None)
        if isinstance(value, list):  # a repeatable flag: each use gave a tuple
            value = tuple(item for given in value for item in given)
        if value is not None:
            values[key] = value
    return values
