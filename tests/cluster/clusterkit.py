"""Several fileferry nodes behind a real HAProxy, on loopback, for tests and benchmarks.

The layout is the one docs/scale-out.md describes, shrunk onto one machine:

- HAProxy listens on 127.0.0.1: the FTP port (round robin over the nodes,
  ``send-proxy-v2``) and, per node, that node's passive range, forwarded to
  the same port on the node (``send-proxy-v2`` too);
- node *i* listens on 127.0.0.(2+i), ``--proxy-protocol --trusted-proxy
  127.0.0.1/32``, with its own ``--passive-ports`` and the balancer's address
  as ``--masquerade-address``;
- clients connect from 127.0.0.5 (``CLIENT``), so the address a node logs
  can only be the client's if it came from the PROXY header.

What the nodes share is a :class:`Backend`: a storage root and a user
database: a local folder and SQLite, a local folder and PostgreSQL, or an
``s3://`` prefix of a SeaweedFS bucket and PostgreSQL (``conftest.py``
starts the services and returns their URLs); nothing else here changes.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from waiting import until

#: Where clients connect from (a loopback address of its own).
CLIENT = "127.0.0.5"
#: Where HAProxy listens, and the only address the nodes trust.
BALANCER = "127.0.0.1"
#: Passive ports per node.
RANGE_WIDTH = 8
#: The accounts every cluster test logs in with.
USERS = {"alice": "alice-secret", "bob": "bob-secret"}
#: How long a service may take to come up.
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Backend:
    """What every node shares: ``root`` (a folder or a storage URL) and ``db``."""

    name: str
    root: str
    db: str
    #: Extra environment for the nodes and ``fileferry user`` (a password...).
    env: dict[str, str] = field(default_factory=dict)
    #: The S3 server when ``root`` is an ``s3://`` URL (``tests/services/seaweed.py``).
    store: Any = None

    @property
    def on_s3(self) -> bool:
        return self.root.startswith("s3://")

    def home(self, user: str) -> str:
        """A user's home under the shared root: a folder, or a key prefix of the bucket."""
        return f"{self.root}/{user}" if self.on_s3 else str(Path(self.root) / user)

    def stored(self, user: str) -> dict[str, int]:
        """Every name under ``user``'s home, hidden ones too, and its size, from the store itself.

        Read past fileferry (the folder, or ListObjectsV2 on the bucket): a
        temp file or object left behind by a refused upload shows here even
        though no FTP listing would show it.
        """
        if not self.on_s3:
            home = Path(self.home(user))
            return {p.name: p.stat().st_size for p in home.iterdir()} if home.exists() else {}
        prefix = self._prefix(user)
        return {k[len(prefix) :]: size for k, size in _list_objects(self.store, prefix)}

    def _prefix(self, user: str) -> str:
        return self.root.removeprefix(f"s3://{self.store.bucket}/") + f"/{user}/"

    def pending(self, user: str) -> list[str]:
        """Multipart uploads begun under ``user``'s home and never completed nor aborted."""
        if not self.on_s3:
            return []
        return list(self.store.pending_uploads(self._prefix(user)))


_S3 = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _list_objects(store: Any, prefix: str) -> list[tuple[str, int]]:
    """Every object under ``prefix`` with its size (ListObjectsV2, all pages, signed)."""
    found: list[tuple[str, int]] = []
    query = {"list-type": "2", "prefix": prefix}
    while True:
        status, body = store.request("GET", f"/{store.bucket}", query)
        if status != 200:
            raise RuntimeError(f"ListObjectsV2: HTTP {status} {body[:300]!r}")
        page = ET.fromstring(body)
        for item in page.iter(f"{_S3}Contents"):
            found.append((item.findtext(f"{_S3}Key") or "", int(item.findtext(f"{_S3}Size") or 0)))
        token = page.findtext(f"{_S3}NextContinuationToken")
        if page.findtext(f"{_S3}IsTruncated") != "true" or not token:
            return found
        query = {**query, "continuation-token": token}


def haproxy_binary() -> str:
    """HAProxy from Debian; a missing one fails the test (CI installs it)."""
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None
    )
    if found is None:
        raise RuntimeError("haproxy is not installed (apt-get install haproxy; .ci/run does)")
    return found


def fileferry(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    """Run a ``fileferry`` command line; its output, or an error with its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "fileferry", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    if done.returncode != 0:
        raise RuntimeError(f"fileferry {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def free_range(width: int, hosts: Sequence[str], taken: set[int]) -> tuple[int, int]:
    """``width`` consecutive ports free on every one of ``hosts`` (and not in ``taken``).

    Searched below the kernel's ephemeral range (32768 and up on Linux), where
    outgoing connections of a busy machine would leave holes in any range.
    """
    for _ in range(500):
        base = random.randrange(20000, 32000 - width)
        ports = range(base, base + width)
        if taken.isdisjoint(ports) and all(_bindable(h, p) for h in hosts for p in ports):
            taken.update(ports)
            return base, base + width - 1
    raise RuntimeError("no free port range on loopback")


def _supports(flag: str) -> bool:
    """Whether ``fileferry serve`` has ``flag`` (``--node-name`` lands separately)."""
    return flag in fileferry("serve", "--help")


@dataclass
class Node:
    """One ``fileferry serve`` process."""

    name: str
    host: str
    passive: tuple[int, int]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def banner(self) -> str:
        return f"fileferry node {self.name} ready."

    def start(self, backend: Backend, extra: Sequence[str] = (), *, proxied: bool = True) -> None:
        """Start the node; ``proxied=False``: on its own, for clients straight to it."""
        args = [
            sys.executable, "-m", "fileferry", "serve", backend.root,
            "--db", backend.db,
            "--host", self.host, "--port", "0",
            "--no-anonymous",
            "--passive-ports", f"{self.passive[0]}-{self.passive[1]}",
            *extra,
        ]  # fmt: skip
        if proxied:
            args += ["--proxy-protocol", "--trusted-proxy", f"{BALANCER}/32"]
            args += ["--masquerade-address", BALANCER]
        if _supports("--node-name"):
            args += ["--node-name", self.name]
        env = {**os.environ, **backend.env, "FILEFERRY_LOGIN_FAILURE_DELAY": "0"}
        env["FILEFERRY_BANNER"] = self.banner  # which node a session landed on
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True
        )
        log.close()
        self.port = self._wait_ready()

    def _wait_ready(self) -> int:
        """The port from the node's ready line (it listens on port 0: no race for one)."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        fd = self.proc.stdout.fileno()
        seen = ""
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            chunk = os.read(fd, 4096) if ready else b""
            if ready and not chunk:
                raise RuntimeError(f"node {self.name} exited: {self.log_path.read_text()[-2000:]}")
            seen += chunk.decode(errors="replace")
            match = re.search(r" at ftp://[\d.]+:(\d+)", seen)
            if match:
                return int(match.group(1))
        raise RuntimeError(f"node {self.name} did not come up: {seen!r}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """``kill -9``: no drain, no cleanup, as a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


def haproxy_config(port: int, nodes: Sequence[Node]) -> str:
    """The configuration docs/scale-out.md shows, for these nodes on loopback."""
    lines = [
        "global",
        "    maxconn 4000",
        "defaults",
        "    mode tcp",
        "    timeout connect 2s",
        "    timeout client 120s",
        "    timeout server 120s",
        # A node that died refuses connections: try again, on another node.
        "    retries 2",
        "    option redispatch",
        "frontend ftp",
        f"    bind {BALANCER}:{port}",
        "    default_backend nodes",
        "backend nodes",
        "    balance roundrobin",
        f"    source {BALANCER}",
    ]
    for node in nodes:
        lines.append(
            f"    server {node.name} {node.host}:{node.port} send-proxy-v2"
            " check inter 1s fall 1 rise 2"
        )
    for node in nodes:
        lo, hi = node.passive
        lines += [
            f"frontend passive_{node.name}",
            f"    bind {BALANCER}:{lo}-{hi}",
            f"    default_backend passive_{node.name}",
            f"backend passive_{node.name}",
            f"    source {BALANCER}",
            # No port: the one the client connected to, in this node's range.
            f"    server {node.name} {node.host} send-proxy-v2",
        ]
    return "\n".join(lines) + "\n"


class Cluster:
    """HAProxy in front of ``count`` nodes sharing one :class:`Backend`."""

    def __init__(
        self, workdir: Path, backend: Backend, count: int = 2, width: int = RANGE_WIDTH
    ) -> None:
        self.workdir = workdir
        self.backend = backend
        taken: set[int] = set()
        self.nodes = []
        for i in range(count):
            host = f"127.0.0.{2 + i}"
            passive = free_range(width, (BALANCER, host), taken)
            self.nodes.append(Node(chr(ord("a") + i), host, passive, workdir / f"node-{i}.log"))
        self.port = 0
        self.haproxy: subprocess.Popen[str] | None = None
        self.haproxy_log = workdir / "haproxy.log"

    @property
    def address(self) -> tuple[str, int]:
        return BALANCER, self.port

    def start(self, node_args: Sequence[str] = ()) -> Cluster:
        for node in self.nodes:
            node.start(self.backend, node_args)
        self.port = free_port(BALANCER)
        config = self.workdir / "haproxy.cfg"
        config.write_text(haproxy_config(self.port, self.nodes))
        binary = haproxy_binary()
        subprocess.run([binary, "-c", "-q", "-f", str(config)], check=True, timeout=30)
        log = self.haproxy_log.open("a")
        self.haproxy = subprocess.Popen(
            [binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT, text=True
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Until a connection through HAProxy gets a node's 220."""

        def greeted() -> bool:
            assert self.haproxy is not None
            if self.haproxy.poll() is not None:
                raise RuntimeError(f"haproxy exited: {self.haproxy_log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(self.address, timeout=5) as sock,
            ):
                sock.settimeout(5)
                return sock.recv(512).startswith(b"220")
            return False  # HAProxy not listening yet

        until(greeted, "a 220 through haproxy", START_TIMEOUT)

    def node_of(self, welcome: str) -> Node:
        """The node a session landed on, from its 220."""
        for node in self.nodes:
            if node.banner in welcome:
                return node
        raise AssertionError(f"no node's banner in {welcome!r}")

    def stop(self) -> None:
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            try:
                self.haproxy.wait(10)
            except subprocess.TimeoutExpired:
                self.haproxy.kill()
                self.haproxy.wait(10)
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(
    workdir: Path, backend: Backend, count: int = 2, width: int = RANGE_WIDTH
) -> Iterator[Cluster]:
    cluster = Cluster(workdir, backend, count, width)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
