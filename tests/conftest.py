"""Suite-wide switch: run every server the tests start with several workers.

``FILEFERRY_TEST_WORKERS=2 pytest`` makes each in-process server
(``ServerThread``) run two workers on their own threads and loops, sharing
the port with SO_REUSEPORT and splitting the passive range, exactly as
``--workers 2`` processes do; and it exports ``FILEFERRY_WORKERS=2`` so that
every ``fileferry serve`` the CLI tests start forks two worker processes.
Unset (the default, and CI), nothing changes.
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
        if config.passive_ports is not None:
            lo, hi = config.passive_ports
            workers = min(workers, hi - lo + 1)  # a one-port range stays one worker
        _original_init(self, dataclasses.replace(config, workers=workers), **kwargs)

    _thread.ServerThread.__init__ = _with_workers  # type: ignore[method-assign]


#: Tests of limits that each worker keeps in its own memory (see the docstring of
#: fileferry/server/workers.py): with several workers their counts are per worker.
PER_WORKER_STATE = {
    "tests/accounts/test_login_rules.py::test_max_sessions_per_user",
    "tests/accounts/test_quota_e2e.py::"
    "test_sessions_of_one_user_share_the_quota_while_uploads_are_in_flight",
    "tests/server/test_limits.py::test_repeated_failures_ban_the_address_across_reconnects",
    "tests/server/test_limits.py::test_total_session_limit_answers_421",
    "tests/hostile/test_hostile.py::test_per_address_cap_refuses_with_421",
    # AVBL after an upload through another connection: that one may be on another worker.
    "tests/accounts/test_accounts_curl.py::test_quota_552_and_nothing_kept",
}


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if _WORKERS <= 1:
        return
    import pytest

    for item in items:
        if item.nodeid in PER_WORKER_STATE:
            item.add_marker(pytest.mark.skip(reason="limits are per worker with --workers > 1"))
