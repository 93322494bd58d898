"""A real ``fileferry serve`` process for the observability tests, and what they read back.

stderr goes to a file, not a pipe: a JSON log at debug level would fill a
pipe nobody reads and stall the server.
"""

from __future__ import annotations

import ftplib
import os
import re
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from waiting import until  # noqa: F401  (the kit's callers import it from here)

READY = re.compile(r"at ftp://127\.0\.0\.1:(?P<port>\d+)")
METRICS = re.compile(r"metrics at http://127\.0\.0\.1:(?P<port>\d+)/metrics")


class Served:
    """``fileferry serve ARGS`` until :meth:`stop`; ``log`` holds its stderr."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log = tmp / "stderr.log"
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        environment.pop("FILEFERRY_WORKERS", None)
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fileferry", "serve", *args],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=environment,
            )
        self.line = self._ready_line()
        found = READY.search(self.line)
        assert found, (self.line, self.log.read_text())
        self.port = int(found["port"])
        metrics = METRICS.search(self.line)
        self.metrics_port = int(metrics["port"]) if metrics else None

    def _ready_line(self, timeout: float = 30) -> str:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            self.proc.kill()
            raise AssertionError(f"no ready line within {timeout} s: {self.log.read_text()}")
        return self.proc.stdout.readline()

    def ftp(self, user: str | None = None, password: str = "") -> ftplib.FTP:
        f = ftplib.FTP(timeout=20)
        f.encoding = "utf-8"
        f.connect("127.0.0.1", self.port)
        if user is not None:
            f.login(user, password)
        return f

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of ``/metrics``, parsed by prometheus-client's own parser."""
        assert self.metrics_port is not None
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=20) as response:
            assert response.status == 200
            text = response.read().decode()
        return samples(text)

    def children(self) -> list[int]:
        """The worker processes (``--workers``), by /proc."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_bytes()
                except OSError:
                    continue
                if int(stat[stat.rindex(b")") + 2 :].split()[1]) == self.proc.pid:
                    found.append(int(entry))
        return found

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)


class ReusingFTP_TLS(ftplib.FTP_TLS):
    """ftplib's FTP_TLS resuming the control TLS session on data connections
    (which fileferry requires by default, as vsftpd does)."""

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session
            )
        return conn, size


def tls_client(port: int) -> ReusingFTP_TLS:
    """A client of a server with a throwaway (self-signed) certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    f = ReusingFTP_TLS(context=context, timeout=20)
    f.connect("127.0.0.1", port)
    return f


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of an exposition text."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(scraped: dict, name: str, **labels: str) -> float:
    """One sample's value; 0 when it does not exist yet (a counter never touched)."""
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)
