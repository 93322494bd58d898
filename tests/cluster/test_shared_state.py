"""What the nodes must hold together: bans, per-user session caps and quotas.

On PostgreSQL (``local-postgres``) the nodes share these through the
database (``limits/pgsync.py``, ``limits/pgquota.py``), and the tests pass.
With an SQLite database each node keeps them in its own process
(``limits/local.py``: SQLite is one file on one host), so there the tests
are ``xfail(strict=True)``: each is built so that it cannot pass by accident
against per-node state (the guesses and the bytes are split unevenly, so no
node alone reaches the limit).
"""

from __future__ import annotations

import ftplib
import io
import time
from pathlib import Path

import pytest
from clusterbackends import make_backend
from clusterkit import USERS, Backend, Cluster, Node, fileferry, running

PER_NODE = "with SQLite, bans, session counts and quota figures are per node"
#: A client address of its own, so a ban here touches no other test.
GUESSER = "127.0.0.6"


@pytest.fixture(scope="module", params=["local-postgres", "local-sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Backend:
    return make_backend(request.param, request, tmp_path_factory)


@pytest.fixture(autouse=True)
def _per_node_with_sqlite(request: pytest.FixtureRequest, backend: Backend) -> None:
    if backend.name == "local-sqlite":
        request.applymarker(pytest.mark.xfail(strict=True, reason=PER_NODE))


def _session(cluster: Cluster, source: str) -> tuple[ftplib.FTP, Node]:
    f = ftplib.FTP(timeout=20, source_address=(source, 0))
    welcome = f.connect(*cluster.address)
    return f, cluster.node_of(welcome)


def _on(cluster: Cluster, node: Node, source: str) -> ftplib.FTP:
    for _ in range(4 * len(cluster.nodes)):
        f, landed = _session(cluster, source)
        if landed is node:
            return f
        f.close()
    raise AssertionError(f"round robin never reached node {node.name}")


def test_wrong_passwords_spread_over_both_nodes_ban_the_address_on_both(
    backend: Backend, tmp_path: Path
) -> None:
    with running(tmp_path, backend) as cluster:
        a, b = cluster.nodes
        # The threshold is 5: three guesses on one node and two on the other.
        for node in (a, b, a, b, a):
            f = _on(cluster, node, GUESSER)
            with pytest.raises((ftplib.error_perm, ftplib.error_temp)):
                f.login("alice", "wrong")
            f.close()
        # A ban reaches every node within the shared limits' staleness bound
        # (about 0.55 s, limits/pgsync.py): wait for it, with a deadline.
        deadline = time.monotonic() + 3
        for node in (a, b):
            while True:
                try:
                    f = _on(cluster, node, GUESSER)
                    f.login("alice", USERS["alice"])
                except ftplib.error_temp as exc:
                    assert str(exc).startswith("421")
                    break
                f.quit()
                assert time.monotonic() < deadline, f"node {node.name} never banned"
                time.sleep(0.05)


def test_a_quota_is_one_figure_across_nodes(backend: Backend, tmp_path: Path) -> None:
    fileferry(
        "user", "add", "carol", "--db", backend.db, "--password-stdin",
        "--home", str(Path(backend.root) / "carol"), "--permissions", "elradfmw",
        "--quota-bytes", "1M", env=backend.env, stdin="carol-secret\n",
    )  # fmt: skip
    with running(tmp_path, backend) as cluster:
        a, b = cluster.nodes
        on_b = _on(cluster, b, "127.0.0.5")
        on_b.login("carol", "carol-secret")  # node b has carol's figure from now on
        on_a = _on(cluster, a, "127.0.0.5")
        on_a.login("carol", "carol-secret")
        on_a.storbinary("STOR first.bin", io.BytesIO(bytes(700_000)))
        on_a.quit()
        # 700 KB more would make 1.4 MB of a 1 MB quota: refused, whichever node.
        with pytest.raises(ftplib.error_perm, match="552"):
            on_b.storbinary("STOR second.bin", io.BytesIO(bytes(700_000)))
        assert "second.bin" not in on_b.nlst()
        on_b.quit()
