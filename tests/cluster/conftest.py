"""Fixtures of the cluster tests: what the nodes share, and the cluster in front of it.

``backend`` is parametrised by name (``clusterbackends.py``): a local folder
and SQLite, and an ``s3://`` prefix and PostgreSQL, for every module;
``test_shared_state.py`` also runs on a local folder and PostgreSQL
(``local-postgres``). A backend that needs a service starts it (failing,
not skipping, when it is missing) and returns a
:class:`~clusterkit.Backend` with its URLs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clusterbackends import BACKENDS, make_backend
from clusterkit import Backend, Cluster, running


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    return make_backend(request.param, request, tmp_path_factory)


@pytest.fixture(scope="module")
def cluster(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two nodes behind HAProxy, shared by a module's tests that kill nothing."""
    with running(tmp_path_factory.mktemp("cluster"), backend) as made:
        yield made
