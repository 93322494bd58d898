"""Frozen, validated server configuration, from one description of every setting.

* :mod:`~fileferry.config.model`: the nested, typed tree (``config.tls.cert``,
  ``config.limits.sessions.max``...) and, on each field, its description.
* :mod:`~fileferry.config.schema`: the table of settings generated from it.
* :mod:`~fileferry.config.load`: TOML files and ``FILEFERRY_*`` variables,
  merged by :func:`build`; :mod:`~fileferry.config.flags`: the ``serve`` flags.
* :mod:`~fileferry.config.tables`: ``[[user]]`` and ``[site_exec.NAME]``.
* :mod:`~fileferry.config.validate`: rules across settings and backend checks.

Code and tests make a config with ``build({"root": ..., "port": 0})``: flat
keys, exactly as in a TOML file, coerced and checked like one.
"""

from fileferry.config.describe import parse_port_range
from fileferry.config.hooks import HOOK_EVENTS, HookConfig, hooks_from_toml
from fileferry.config.load import build, from_environment, load_toml
from fileferry.config.model import (
    FS_CALLS,
    LOG_LEVELS,
    BanLimits,
    DataConfig,
    LimitsConfig,
    LoggingConfig,
    MetricsConfig,
    RateLimits,
    ServerConfig,
    SessionLimits,
    SiteExecCommand,
    StorageConfig,
    TLSConfig,
    UserConfig,
    UserStoreConfig,
)
from fileferry.config.schema import SETTINGS, flatten, updated
from fileferry.config.tables import parse_user_spec
from fileferry.config.validate import validate

__all__ = [
    "FS_CALLS",
    "HOOK_EVENTS",
    "LOG_LEVELS",
    "SETTINGS",
    "BanLimits",
    "DataConfig",
    "HookConfig",
    "LimitsConfig",
    "LoggingConfig",
    "MetricsConfig",
    "RateLimits",
    "ServerConfig",
    "SessionLimits",
    "SiteExecCommand",
    "StorageConfig",
    "TLSConfig",
    "UserConfig",
    "UserStoreConfig",
    "build",
    "flatten",
    "from_environment",
    "hooks_from_toml",
    "load_toml",
    "parse_port_range",
    "parse_user_spec",
    "updated",
    "validate",
]
