"""Checks of a whole configuration: bounds, rules between settings, backends.

Per-setting bounds come from the description (:mod:`fileferry.config.model`);
what is left here are the rules that span settings (TLS needs a certificate,
each worker needs a passive port) and the backends' own checks of their
locations (:mod:`fileferry.backends`), which also normalise them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path
from typing import Any

from fileferry import backends
from fileferry.backends.local import unreadable
from fileferry.config.describe import check_bounds
from fileferry.config.model import ServerConfig
from fileferry.config.schema import SETTINGS
from fileferry.errors import ConfigError


def validate(cfg: ServerConfig) -> ServerConfig:
    """``cfg`` checked, with its backend locations normalised; or a ConfigError."""
    for leaf in SETTINGS.values():
        node: Any = cfg
        for name in leaf.path:
            node = getattr(node, name)
        check_bounds(leaf.meta, node)
    _validate_addresses(cfg)
    _validate_tls(cfg)
    _validate_workers(cfg)
    _validate_admin(cfg)
    _validate_users(cfg)
    _validate_proxy(cfg)
    backend = backends.storage_backend(cfg.storage.root)
    root = backend.check(cfg.storage.root)
    probe = getattr(backend, "probe", None)
    if probe is not None:
        probe(root, cfg)
    served = [root] + [
        str(Path(u.home).expanduser())
        for u in cfg.users
        if u.home and backends.scheme_of(u.home) == "file"
    ]
    db = cfg.user_store.db
    if db is not None:
        db = backends.user_store_backend(db).check(db, served)
    return replace(
        cfg,
        storage=replace(cfg.storage, root=root),
        user_store=replace(cfg.user_store, db=db),
    )


def _validate_addresses(cfg: ServerConfig) -> None:
    try:
        ipaddress.ip_address(cfg.host.split("%", 1)[0])
    except ValueError:
        if cfg.host != "localhost":
            raise ConfigError(f"host: {cfg.host!r} is not an IP address") from None
    masquerade = cfg.data.masquerade_address
    if masquerade is not None:
        try:
            ipaddress.IPv4Address(masquerade)
        except ValueError:
            raise ConfigError(
                f"masquerade_address: {masquerade!r} is not an IPv4 address"
            ) from None


def _validate_proxy(cfg: ServerConfig) -> None:
    """A PROXY header is believed only from a named balancer, never from anyone."""
    proxy = cfg.proxy
    if proxy.protocol and not proxy.trusted:
        raise ConfigError("proxy_protocol: needs trusted_proxy (the balancer's networks)")
    if proxy.trusted and not proxy.protocol:
        raise ConfigError("trusted_proxy: only with proxy_protocol")


def _validate_tls(cfg: ServerConfig) -> None:
    tls = cfg.tls
    if (tls.cert is None) != (tls.key is None):
        raise ConfigError("tls_cert and tls_key: give both or neither")
    if tls.cert is not None and tls.self_signed:
        raise ConfigError("tls_self_signed: not together with tls_cert/tls_key")
    if tls.required and not tls.enabled:
        raise ConfigError("tls_required: needs tls_cert and tls_key (or tls_self_signed)")
    if tls.implicit_port is not None and not tls.enabled:
        raise ConfigError("tls_implicit_port: needs tls_cert and tls_key (or tls_self_signed)")
    if tls.implicit_port == cfg.port and cfg.port != 0:  # 0 and 0: two free ports
        raise ConfigError(f"tls_implicit_port: must differ from port (both are {cfg.port})")


def _validate_admin(cfg: ServerConfig) -> None:
    if cfg.admin.listen is None:
        return
    if cfg.user_store.db is None:
        raise ConfigError(
            "admin: needs a user database (--db): administrators and accounts live there"
        )
    if cfg.workers > 1:
        raise ConfigError("admin: runs with one worker only (--workers 1)")


def _validate_workers(cfg: ServerConfig) -> None:
    """Each worker needs at least one passive port of its own."""
    ports = cfg.data.passive_ports
    if ports is not None and cfg.workers > 1:
        lo, hi = ports
        if hi - lo + 1 < cfg.workers:
            raise ConfigError(
                f"passive_ports: {lo}-{hi} has fewer ports than the {cfg.workers} workers"
            )


def _validate_users(cfg: ServerConfig) -> None:
    """Names are unique; homes and virtual folders exist."""
    names = [u.name for u in cfg.users]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"user {sorted(dupes)[0]!r} is defined twice")
    for user in cfg.users:
        if user.home is None or backends.scheme_of(user.home) != "file":
            continue
        home = Path(user.home).expanduser()
        if not home.is_dir():
            raise ConfigError(f"user {user.name!r}: home {user.home!r} is not a directory")
        problem = unreadable(str(home))
        if problem is not None:
            raise ConfigError(f"user {user.name!r}: home {user.home!r} cannot be read ({problem})")
        folders = dict(user.account_fields).get("virtual_folders", ())
        for folder in folders:  # type: ignore[attr-defined]
            if not Path(folder.source).is_dir():
                raise ConfigError(
                    f"user {user.name!r}: virtual folder {folder.path}: {folder.source!r}"
                    " is not a directory"
                )
