"""Metrics with ``--workers N``: the per-run directory of prometheus-client's multiprocess mode.

prometheus-client chooses between in-memory values and per-process files
once, when it is first imported, from ``PROMETHEUS_MULTIPROC_DIR``. So the
``--workers`` parent names a fresh directory in its environment *before*
anything imports the package, and the workers it forks inherit both. This
module therefore imports prometheus-client only inside
:func:`forget_process`, which runs after that.

The directory is new for each run (``mkdtemp``), so no count of an earlier
run (or of another server) is ever summed into this one, and it is removed
when the parent ends.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from fileferry.errors import ConfigError

#: The variable prometheus-client reads (once, at import) to choose multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_EXTRA = "--metrics needs prometheus-client: pip install 'fileferry[metrics]'"


def prepare_multiprocess_dir() -> str:
    """A fresh, empty directory for this run's metric files, named in the environment."""
    if importlib.util.find_spec("prometheus_client") is None:
        raise ConfigError(METRICS_EXTRA)
    if "prometheus_client" in sys.modules and not os.environ.get(MULTIPROC_ENV):
        # Imported in memory mode already: the workers would count apart.
        raise ConfigError("--metrics with --workers: prometheus-client was imported too early")
    import tempfile  # here: every server imports this module, few use --workers --metrics

    path = tempfile.mkdtemp(prefix="fileferry-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path


def forget_process(pid: int, path: str) -> None:
    """A worker died: its live gauges (open sessions) no longer count; its counters do."""
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(pid, path)


def remove_multiprocess_dir(path: str) -> None:
    """At the parent's end: the run's metric files go with it."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    if os.environ.get(MULTIPROC_ENV) == path:
        del os.environ[MULTIPROC_ENV]
