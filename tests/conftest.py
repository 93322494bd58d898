"""Suite-wide switch: run every server the tests start with several workers.

``FILEFERRY_TEST_WORKERS=2 pytest`` makes each in-process server
(``ServerThread``) run two workers on their own threads and loops, accepting
from one listening socket and splitting the passive range, exactly as
``--workers 2`` processes do; and it exports ``FILEFERRY_WORKERS=2`` so that
every ``fileferry serve`` the CLI tests start forks two worker processes.
Unset (the default, and CI), nothing changes. Every test must pass both ways:
the limits the workers enforce together are shared (``fileferry/limits/shared.py``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

# Popped, so that the servers the CLI tests start never see an unknown FILEFERRY_* name.
_WORKERS = int(os.environ.pop("FILEFERRY_TEST_WORKERS", "1") or "1")

if _WORKERS > 1:
    from fileferry.server import thread as _thread

    os.environ["FILEFERRY_WORKERS"] = str(_WORKERS)
    _original_init = _thread.ServerThread.__init__

    def _with_workers(self: _thread.ServerThread, config: Any, **kwargs: Any) -> None:
        workers = _WORKERS
        if config.data.passive_ports is not None:
            lo, hi = config.data.passive_ports
            workers = min(workers, hi - lo + 1)  # a one-port range stays one worker
        _original_init(self, dataclasses.replace(config, workers=workers), **kwargs)

    _thread.ServerThread.__init__ = _with_workers  # type: ignore[method-assign]

# Real services a test can ask for by fixture name (``postgres``, ``pg_url``).
pytest_plugins = ["services.postgres"]

# -- services some tests need, started once per session ---------------------------------
import sys  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "services"))


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A SeaweedFS with its S3 gateway and a bucket (``tests/services/seaweed.py``)."""
    from seaweed import start

    server = start(tmp_path_factory.mktemp("seaweed"))
    try:
        yield server
    finally:
        server.stop()
