"""The table of every setting, generated once from the configuration tree.

:data:`SETTINGS` maps each flat key to where it lives in the tree, how its
values are coerced and what its flag looks like; the loaders, the flags and
the validation all read it, so a field added to :mod:`fileferry.config.model`
is known everywhere at once.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fileferry.config.describe import Setting, coercer
from fileferry.config.model import ServerConfig
from fileferry.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Leaf:
    """One setting: its description, its place in the tree and its type."""

    meta: Setting
    #: Attribute names from the root, e.g. ``("limits", "sessions", "idle_timeout")``.
    path: tuple[str, ...]
    hint: Any
    coerce: Callable[[object], object]

    @property
    def default(self) -> object:
        node: Any = ServerConfig()
        for name in self.path:
            node = getattr(node, name)
        return node


def _walk(cls: type, path: tuple[str, ...]) -> Iterator[Leaf]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        meta = f.metadata.get("setting")
        if meta is not None:
            yield Leaf(meta, (*path, f.name), hint, coercer(hint, meta))
        elif dataclasses.is_dataclass(hint):
            yield from _walk(hint, (*path, f.name))  # type: ignore[arg-type]


#: Flat key -> leaf, in the order the fields are declared.
SETTINGS: dict[str, Leaf] = {leaf.meta.key: leaf for leaf in _walk(ServerConfig, ())}
#: Dotted nested key (``tls.cert``) -> flat key (``tls_cert``), for ``[tls]`` tables.
NESTED: dict[str, str] = {".".join(leaf.path): key for key, leaf in SETTINGS.items()}
#: Names of the nested sections, the TOML tables that hold settings.
SECTIONS: frozenset[str] = frozenset(
    ".".join(leaf.path[:i]) for leaf in SETTINGS.values() for i in range(1, len(leaf.path))
)
#: Keys set from tables of their own rather than settings (``[[user]]``, ``[site_exec.X]``).
LISTS = ("users", "site_exec", "hooks")


def coerce(key: str, value: object) -> object:
    """The typed value of flat ``key``; unknown keys are the caller's to report."""
    return SETTINGS[key].coerce(value)


def assemble(values: Mapping[str, object]) -> ServerConfig:
    """A config tree from flat keys (missing ones keep their defaults)."""
    for key in values:
        if key not in SETTINGS and key not in LISTS:
            raise ConfigError(f"unknown setting {key!r}")
    cfg: ServerConfig = _build(ServerConfig, (), values)
    return cfg


def _build(cls: type, path: tuple[str, ...], values: Mapping[str, object]) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("setting")
        if meta is not None:
            if meta.key in values:
                kwargs[f.name] = values[meta.key]
        elif dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = _build(hints[f.name], (*path, f.name), values)
        elif not path and f.name in values:
            kwargs[f.name] = values[f.name]
    return cls(**kwargs)


def flatten(cfg: ServerConfig) -> dict[str, object]:
    """Flat key -> value of every setting of ``cfg`` (and its user and SITE EXEC lists)."""
    flat: dict[str, object] = {}
    for key, leaf in SETTINGS.items():
        node: Any = cfg
        for name in leaf.path:
            node = getattr(node, name)
        flat[key] = node
    flat["users"] = cfg.users
    flat["site_exec"] = cfg.site_exec
    flat["hooks"] = cfg.hooks
    return flat


def updated(cfg: ServerConfig, **changes: object) -> ServerConfig:
    """``cfg`` with some settings changed, by flat key (``port=0, tls_cert=...``)."""
    return assemble({**flatten(cfg), **changes})
