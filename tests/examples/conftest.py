"""Fixtures for the examples/ tests: run example programs as real subprocesses."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
READY_TIMEOUT = 15.0


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    address: str  # "127.0.0.1:43121" or "unix:/path"
    stderr_path: Path

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the server and return its exit status."""
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def read_line(stream: object, timeout: float) -> str:
    """Read one line from a subprocess pipe, failing after `timeout` seconds."""
    fd = stream.fileno()  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    buf = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise TimeoutError(f"no complete line within {timeout} s; got {buf!r}")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise EOFError(f"stream closed; got {buf!r}")
            buf += chunk
    line, _, rest = buf.partition(b"\n")
    assert not rest, f"unexpected extra output {rest!r}"
    return line.decode()


class Processes:
    """Starts example programs and makes sure every one of them is gone afterwards."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self, script: str, *args: str, env: dict[str, str] | None = None, **kwargs: object
    ) -> tuple[subprocess.Popen[bytes], Path]:
        stderr_path = self.tmp_path / f"{script}-{len(self.procs)}.stderr"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, str(EXAMPLES / script), *args],
                stderr=stderr,
                env={**os.environ, **(env or {})},
                cwd=self.tmp_path,
                **kwargs,  # type: ignore[call-overload]
            )
        self.procs.append(proc)
        return proc, stderr_path

    def server(self, script: str, *args: str, env: dict[str, str] | None = None) -> Server:
        proc, stderr_path = self.spawn(
            script, "server", *args, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        try:
            line = read_line(proc.stdout, READY_TIMEOUT)
        except (TimeoutError, EOFError) as exc:
            message = f"{script} did not start: {exc}\n{stderr_path.read_text()}"
            raise AssertionError(message) from exc
        match = re.fullmatch(r"listening on (\S+)", line)
        assert match, f"bad ready line {line!r}"
        return Server(proc, match[1], stderr_path)

    @staticmethod
    def read_line(stream: object, timeout: float) -> str:
        return read_line(stream, timeout)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream:
                    stream.close()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(tmp_path)
    try:
        yield processes
    finally:
        processes.close()
