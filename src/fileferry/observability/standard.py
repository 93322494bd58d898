"""The observers a server gets from its configuration, when its embedder names none.

The session log always; the xferlog with ``--xferlog``; the metrics with
``--metrics``, whose module (and prometheus-client) is imported only then,
so a plain ``fileferry serve`` never loads the optional package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fileferry.backends import scheme_of
from fileferry.errors import ConfigError
from fileferry.observability.dispatch import Observer
from fileferry.observability.multiproc import METRICS_EXTRA
from fileferry.observability.sessionlog import SessionLog

if TYPE_CHECKING:
    from fileferry.config import ServerConfig


def standard_observers(config: ServerConfig) -> list[Observer]:
    """The session log, and the xferlog and metrics the configuration asks for."""
    observers: list[Observer] = [SessionLog()]
    if config.logging.xferlog is not None:
        from fileferry.observability.xferlog import XferLog

        try:
            observers.append(XferLog(config.logging.xferlog))
        except OSError as exc:
            path = config.logging.xferlog
            raise ConfigError(f"xferlog: cannot open {path}: {exc.strerror}") from None
    if config.metrics.address is not None:
        try:
            from fileferry.observability.metrics import Metrics
        except ImportError:
            raise ConfigError(METRICS_EXTRA) from None
        observers.append(
            Metrics(
                backend=scheme_of(config.storage.root),
                per_user=config.metrics.per_user,
                max_users=config.metrics.max_users,
            )
        )
    return observers
