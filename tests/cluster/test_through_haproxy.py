"""Two nodes behind a real HAProxy (send-proxy-v2), driven by ftplib, curl and lftp."""

from __future__ import annotations

import contextlib
import ftplib
import hashlib
import io
import os
import re
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from clusterkit import BALANCER, CLIENT, USERS, Cluster, Node, running

from fileferry.protocol.addresses import parse_pasv_reply


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def login(cluster: Cluster, user: str = "alice") -> tuple[ftplib.FTP, Node]:
    """A session through HAProxy from the client's own address, and the node it landed on."""
    f = ftplib.FTP(timeout=20, source_address=(CLIENT, 0))
    f.encoding = "utf-8"
    welcome = f.connect(*cluster.address)
    f.login(user, USERS[user])
    return f, cluster.node_of(welcome)


def login_on(cluster: Cluster, node: Node, user: str = "alice") -> ftplib.FTP:
    """Log in until round robin lands the session on ``node`` (a few tries at most)."""
    for _ in range(4 * len(cluster.nodes)):
        f, landed = login(cluster, user)
        if landed is node:
            return f
        f.quit()
    raise AssertionError(f"round robin never reached node {node.name}")


def test_a_file_uploaded_through_one_node_is_listed_read_and_deleted_through_the_other(
    cluster: Cluster,
) -> None:
    a, b = cluster.nodes
    data = os.urandom(3 * 1024 * 1024 + 17)
    f = login_on(cluster, a)
    f.storbinary("STOR shared.bin", io.BytesIO(data))
    f.quit()
    g = login_on(cluster, b)
    assert "shared.bin" in g.nlst()
    assert g.size("shared.bin") == len(data)
    got = io.BytesIO()
    g.retrbinary("RETR shared.bin", got.write)
    assert sha(got.getvalue()) == sha(data)
    assert g.delete("shared.bin").startswith("250")
    g.quit()
    f = login_on(cluster, a)
    assert "shared.bin" not in f.nlst()
    f.quit()


def test_each_node_announces_the_balancer_and_its_own_passive_range(cluster: Cluster) -> None:
    for node in cluster.nodes:
        f = login_on(cluster, node)
        for _ in range(3):
            reply = parse_pasv_reply(f.sendcmd("PASV"))
            host, port = reply.host, reply.port
            assert host == BALANCER
            assert node.passive[0] <= port <= node.passive[1]
        assert f.nlst() is not None  # and the data connection through HAProxy is accepted
        f.quit()


def test_active_mode_goes_from_the_node_to_the_real_client(cluster: Cluster) -> None:
    data = os.urandom(200_000)
    for node in cluster.nodes:
        f = login_on(cluster, node, "bob")
        f.set_pasv(False)  # PORT names 127.0.0.5; the node checks it against the header
        f.storbinary(f"STOR active-{node.name}.bin", io.BytesIO(data))
        got = io.BytesIO()
        f.retrbinary(f"RETR active-{node.name}.bin", got.write)
        assert sha(got.getvalue()) == sha(data)
        f.delete(f"active-{node.name}.bin")
        f.quit()


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run(args, capture_output=True, timeout=120, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done  # type: ignore[no-any-return]


def test_curl_uploads_and_lftp_downloads_through_both_nodes(
    cluster: Cluster, tmp_path: Path
) -> None:
    host, port = cluster.address
    uploads = {f"tool-{i}.bin": os.urandom(500_000 + i) for i in range(4)}
    for name, data in uploads.items():  # round robin spreads them over both nodes
        (tmp_path / name).write_bytes(data)
        _run(
            ["curl", "-sS", "--interface", CLIENT, "-T", str(tmp_path / name),
             f"ftp://alice:{USERS['alice']}@{host}:{port}/{name}"]
        )  # fmt: skip
    out = tmp_path / "down"
    out.mkdir()
    script = (
        f"set net:socket-bind-ipv4 {CLIENT}; set net:max-retries 1; set ftp:ssl-allow no;"
        f" open -u alice,{USERS['alice']} -p {port} {host};"
        f" lcd {out}; mget tool-*.bin; mrm tool-*.bin"
    )
    _run(["lftp", "-c", script])
    for name, data in uploads.items():
        assert sha((out / name).read_bytes()) == sha(data)
    f, _ = login(cluster)
    assert not [n for n in f.nlst() if n.startswith("tool-")]
    f.quit()


def test_the_nodes_log_the_real_client_not_haproxy(cluster: Cluster) -> None:
    for node in cluster.nodes:
        login_on(cluster, node).quit()
    for node in cluster.nodes:
        log = node.log()
        assert f"peer={CLIENT} user=alice" in log
        assert not re.search(rf"peer={re.escape(BALANCER)} user=(alice|bob)", log)


def _send_partial_upload(cluster: Cluster, node: Node, name: str) -> Callable[[], None]:
    """Start ``STOR name`` on ``node`` and send part of it; returns a closer."""
    f = login_on(cluster, node)
    f.voidcmd("TYPE I")
    conn, _ = f.ntransfercmd(f"STOR {name}")
    conn.sendall(os.urandom(256 * 1024))

    def close() -> None:
        for sock in (conn, f.sock):
            if sock is not None:
                sock.close()

    return close


def test_kill_9_of_a_node_loses_no_committed_file_and_the_survivor_serves(
    backend: object, tmp_path: Path
) -> None:
    with running(tmp_path, backend) as cluster:  # type: ignore[arg-type]
        a, b = cluster.nodes
        files = {f"kept-{i}.bin": os.urandom(100_000 + i) for i in range(6)}
        for i, (name, data) in enumerate(files.items()):
            f = login_on(cluster, (a, b)[i % 2])
            f.storbinary(f"STOR {name}", io.BytesIO(data))
            f.quit()
        close = _send_partial_upload(cluster, a, "in-flight.bin")
        a.kill()
        close()
        for _ in range(4):  # every next login lands on the survivor
            f, landed = login(cluster)
            assert landed is b
            f.quit()
        f, _ = login(cluster)
        names = f.nlst()
        assert "in-flight.bin" not in names  # never committed, never visible
        for name, data in files.items():
            assert name in names
            got = io.BytesIO()
            f.retrbinary(f"RETR {name}", got.write)
            assert sha(got.getvalue()) == sha(data)
        f.quit()


def test_a_connection_straight_to_a_node_without_the_balancer_is_refused(
    cluster: Cluster,
) -> None:
    node = cluster.nodes[0]
    with socket.create_connection((node.host, node.port), timeout=10) as sock:
        sock.sendall(b"USER alice\r\n")
        sock.settimeout(10)
        with contextlib.suppress(ConnectionResetError):  # closed with our bytes unread
            assert sock.recv(512) == b""  # no 220: not a PROXY header


@pytest.fixture(autouse=True)
def _client_address_usable() -> None:
    """The client's loopback address must be bindable (it is on Linux: 127/8)."""
    with socket.socket() as probe:
        probe.bind((CLIENT, 0))
