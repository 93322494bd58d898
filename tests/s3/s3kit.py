"""Helpers of the end-to-end S3 tests: ``fileferry serve s3://...`` as a real process.

Each test serves its own key prefix of the session's SeaweedFS bucket, so
tests never see each other's objects, and checks the store itself (objects
present, pending multipart uploads) through signed requests. A module of
its own name (not ``conftest``), so importing it never picks up another
folder's conftest.
"""

from __future__ import annotations

import asyncio
import contextlib
import ftplib
import os
import re
import selectors
import signal
import socketserver
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from seaweed import aws_env
from waiting import until

sys.path.insert(0, str(Path(__file__).parent.parent / "interop"))

READY = re.compile(r"ftp://(?P<host>[\d.]+):(?P<port>\d+)")


@dataclass
class S3Served:
    """One ``fileferry serve s3://bucket/prefix`` process."""

    store: Any
    prefix: str
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[str] | None = None
    host: str = "127.0.0.1"
    port: int = 0
    #: Environment overrides (e.g. ``AWS_ENDPOINT_URL`` of a relay in front of the store).
    env: dict[str, str] | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.store.bucket}/{self.prefix}"

    def start(self) -> S3Served:
        env = {**os.environ, **self.store.env(), **(self.env or {})}
        # The session log goes to a file: a pipe nobody drains would stall the server.
        with open(self.store.root / f"serve-{self.prefix}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fileferry", "serve", self.url, "--port", "0", *self.args],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=env,
            )
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(60):
            self.proc.kill()
            raise AssertionError("fileferry serve s3://: no ready line within 60 s")
        line = self.proc.stdout.readline()
        m = READY.search(line)
        if m is None:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"no ready line: {line!r} {self.log()}")
        self.host, self.port = m["host"], int(m["port"])
        return self

    def log(self) -> str:
        return (self.store.root / f"serve-{self.prefix}.log").read_text(errors="replace")

    def ftp(self, user: str = "anonymous", password: str = "") -> ftplib.FTP:
        f = ftplib.FTP(timeout=60)
        f.connect(self.host, self.port)
        f.login(user, password)
        return f

    def stop(self, sig: int = signal.SIGTERM) -> int:
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    def pending(self) -> list[str]:
        return self.store.pending_uploads(self.prefix + "/")

    def object_keys(self) -> list[str]:
        """Every key under the prefix, straight from the store (ListObjectsV2)."""
        from s3sign import list_keys

        return [k[len(self.prefix) + 1 :] for k in list_keys(self.store, self.prefix + "/")]


_Server = TypeVar("_Server", bound=socketserver.BaseServer)


@contextlib.contextmanager
def in_process_storage(env: dict[str, str], url: str, port: int) -> Iterator[Any]:
    """An ``S3Storage`` made in this process; at exit its client is closed and its
    sockets to ``port`` are gone, so the next test's descriptor counts start clean."""
    from seaweed import wait_released

    from fileferry.backends.s3 import S3Locations

    with aws_env(env):
        locations = S3Locations(None)
    storage = locations.storage(url)
    try:
        yield storage
    finally:
        asyncio.run(locations.close())
        storage.store = None  # the last reference: obstore closes its pool's connections
        wait_released(port)


@contextlib.contextmanager
def serving(server: _Server) -> Iterator[_Server]:
    """``server`` answering on a thread of its own for the block, then shut and closed."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


async def read_object(storage: Any, path: str) -> bytes:
    """The whole file at ``path`` of ``storage``, read as a RETR reads it."""
    reader = await storage.open_read(path)
    out = bytearray()
    while block := await reader.read(1 << 20):
        out += block
    await reader.close()
    return bytes(out)


def wait_until(check: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
    until(check, what, timeout)


ServeS3 = Callable[..., S3Served]
