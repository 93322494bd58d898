"""What the nodes must hold together: bans, per-user session caps and quotas.

On PostgreSQL (``local-postgres``, ``s3-postgres``) the nodes share these through the
database (``limits/pgsync.py``, ``limits/pgquota.py``), and the tests pass.
With an SQLite database each node keeps them in its own process
(``limits/local.py``: SQLite is one file on one host), so there the tests
are ``xfail(strict=True)``: each is built so that it cannot pass by accident
against per-node state (the guesses and the bytes are split unevenly, so no
node alone reaches the limit). The 20 parallel uploads against a nearly
full quota run on the PostgreSQL backends only: against per-node figures
how far they overshoot depends on timing, so they make no strict xfail.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from clusterbackends import SHARED_BACKENDS, add_user, make_backend
from clusterkit import CLIENT, USERS, Backend, Cluster, Node, fileferry, running
from waiting import until

PER_NODE = "with SQLite, bans, session counts and quota figures are per node"
#: A client address of its own, so a ban here touches no other test.
GUESSER = "127.0.0.6"


@pytest.fixture(scope="module", params=[*sorted(SHARED_BACKENDS), "local-sqlite"])
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
        for node in (a, b):

            def banned(node: Node = node) -> bool:
                try:
                    f = _on(cluster, node, GUESSER)
                    f.login("alice", USERS["alice"])
                except ftplib.error_temp as exc:
                    assert str(exc).startswith("421")
                    return True
                f.quit()
                return False

            until(banned, f"node {node.name} banning the guesser", 3)


def test_a_quota_is_one_figure_across_nodes(backend: Backend, tmp_path: Path) -> None:
    add_user(backend, "carol", "carol-secret", "--quota-bytes", "1M")
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


def _eventually(check: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    """Shared figures reach the other node within a staleness bound."""
    until(check, what, timeout)


def test_a_per_user_session_cap_counts_the_sessions_of_every_node(
    backend: Backend, tmp_path: Path
) -> None:
    add_user(backend, "dave", "dave-secret", "--max-sessions", "2")
    with running(tmp_path, backend) as cluster:
        a, b = cluster.nodes
        held = [_on(cluster, a, CLIENT), _on(cluster, b, CLIENT)]
        for f in held:
            f.login("dave", "dave-secret")

        def third_refused(node: Node) -> Callable[[], bool]:
            def attempt() -> bool:
                f = _on(cluster, node, CLIENT)
                try:
                    f.login("dave", "dave-secret")
                except ftplib.error_perm as exc:
                    assert str(exc).startswith("530") and "Too many sessions" in str(exc)
                    f.close()
                    return True
                f.quit()  # this node has not seen the other's session yet
                return False

            return attempt

        # One session on each node: neither node alone is at the cap of 2.
        _eventually(third_refused(a), "a third login on node a refused")
        _eventually(third_refused(b), "a third login on node b refused")
        held.pop(0).quit()  # node a gives its slot back: a login fits again, on either node

        def fits() -> bool:
            f = _on(cluster, b, CLIENT)
            try:
                f.login("dave", "dave-secret")
            except ftplib.error_perm:
                f.close()
                return False
            held.append(f)
            return True

        _eventually(fits, "a login after one of two sessions ended")
        for f in held:
            f.quit()


UPLOAD = 100_000
#: What the quota holds: the file already there, and room for four uploads.
QUOTA = 1_000_000
ALREADY = QUOTA - 4 * UPLOAD - UPLOAD // 2


@pytest.mark.parametrize("backend", sorted(SHARED_BACKENDS), indirect=True)
def test_parallel_uploads_through_both_nodes_never_pass_a_nearly_full_quota(
    backend: Backend, tmp_path: Path
) -> None:
    add_user(backend, "erin", "erin-secret", "--quota-bytes", str(QUOTA))
    payloads = {f"up{i:02d}.bin": os.urandom(UPLOAD) for i in range(20)}
    outcome: dict[str, str] = {}
    landed: dict[str, str] = {}
    # Ten uploads at once per node: a passive range wider than ten ports.
    with running(tmp_path, backend, width=16) as cluster:
        f, _ = _session(cluster, CLIENT)
        f.login("erin", "erin-secret")
        f.storbinary("STOR old.bin", io.BytesIO(bytes(ALREADY)))
        f.quit()
        start = threading.Barrier(len(payloads), timeout=60)

        def upload(name: str, data: bytes) -> None:
            # Twenty clients, each from an address of its own (a node shares its passive
            # range out per address); round robin puts half of them on each node.
            f, node = _session(cluster, f"127.0.0.{20 + int(name[2:4])}")
            landed[name] = node.name
            try:
                f.login("erin", "erin-secret")
                start.wait()
                try:
                    outcome[name] = f.storbinary(f"STOR {name}", io.BytesIO(data), 16384)
                except ftplib.error_perm as exc:
                    outcome[name] = str(exc)
                except OSError as exc:  # the node closed the data connection at its 552
                    outcome[name] = f"closed: {exc}; " + f.getresp()
            finally:
                f.close()

        threads = [threading.Thread(target=upload, args=item) for item in payloads.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(outcome) == 20, outcome
        assert set(landed.values()) == {"a", "b"}
        accepted = sorted(n for n, reply in outcome.items() if reply.startswith("226"))
        refused = [n for n in outcome if n not in accepted]
        assert all("552" in outcome[n] for n in refused), outcome
        assert 1 <= len(accepted) <= 4, outcome
        # The store itself, past fileferry: the accepted files and the old one, whole,
        # and nothing of a refused upload (no temp file, no object, no open multipart).
        stored = backend.stored("erin")
        assert sorted(stored) == sorted([*accepted, "old.bin"])
        assert all(stored[n] == UPLOAD for n in accepted)
        used = sum(stored.values())
        assert used <= QUOTA
        _eventually(lambda: backend.pending("erin") == [], "refused multipart uploads aborted")
        g, _ = _session(cluster, CLIENT)
        g.login("erin", "erin-secret")
        for name in accepted:
            got = io.BytesIO()
            g.retrbinary(f"RETR {name}", got.write)
            assert (
                hashlib.sha256(got.getvalue()).digest() == hashlib.sha256(payloads[name]).digest()
            )
        g.quit()
    shown = json.loads(
        fileferry("user", "show", "erin", "--db", backend.db, "--json", env=backend.env)
    )
    assert shown["usage"] == {"bytes": used, "files": len(stored)}
    password = backend.env["PGPASSWORD"]
    with psycopg.connect(backend.db, password=password, autocommit=True) as conn:
        figures = conn.execute("SELECT bytes, files FROM fileferry_quota").fetchall()
        assert (used, len(stored)) in figures  # the shared figure is what the store holds
        _eventually(
            lambda: conn.execute("SELECT count(*) FROM fileferry_reservations").fetchone() == (0,),
            "the refused uploads' reservations let go",
        )
