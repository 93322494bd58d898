"""``--workers N``: processes sharing one socket, passive-port slices, supervision; uvloop.

Real processes and sockets, no sleeps: readiness is the ready line, and the
end of a process is awaited with ``wait``.
"""

from __future__ import annotations

import ftplib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fileferry import config
from fileferry.errors import ConfigError
from fileferry.server import eventloop
from fileferry.server.thread import ServerThread
from fileferry.server.workers import passive_slice, worker_config


@pytest.mark.parametrize("lo,hi", [(40000, 40000), (40000, 40001), (40000, 40099), (50000, 50010)])
@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_passive_slices_are_disjoint_contiguous_and_cover_the_range(lo, hi, count) -> None:
    if hi - lo + 1 < count:
        with pytest.raises(ValueError):
            passive_slice((lo, hi), count - 1, count)
        return
    slices = [passive_slice((lo, hi), i, count) for i in range(count)]
    ports = [p for s in slices for p in range(s[0], s[1] + 1)]  # type: ignore[index]
    assert ports == list(range(lo, hi + 1))
    sizes = [s[1] - s[0] + 1 for s in slices]  # type: ignore[index]
    assert max(sizes) - min(sizes) <= 1


def test_no_range_means_no_slicing() -> None:
    assert passive_slice(None, 1, 4) is None


def test_workers_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="workers"):
        config.build({"root": str(tmp_path), "workers": 0})
    with pytest.raises(ConfigError, match="workers"):
        config.build({"root": str(tmp_path), "workers": 65})
    with pytest.raises(ConfigError, match="passive_ports"):
        config.build({"root": str(tmp_path), "workers": 4, "passive_ports": (40000, 40002)})
    cfg = config.build({"root": str(tmp_path), "workers": 2, "passive_ports": (40000, 40009)})
    assert worker_config(cfg, 1, 2121, None).data.passive_ports == (40005, 40009)
    assert config.from_environment({"FILEFERRY_WORKERS": "3"}) == {"workers": 3}


# --- the real thing: fileferry serve --workers 2 ---------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2 :].split()[1]) == pid:
                found.append(int(entry))
    return found


class Served:
    def __init__(self, proc: subprocess.Popen[str], line: str) -> None:
        self.proc = proc
        self.line = line
        self.port = int(line.split(" at ftp://127.0.0.1:")[1].split(" ")[0])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    root = tmp_path / "root"
    root.mkdir()
    (root / "hello.txt").write_bytes(b"hello from a worker\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("FILEFERRY_WORKERS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fileferry", "serve", str(root), "--port", "0",
         "--workers", "2", "--passive-ports", "41000-41019", "--user", "alice:secret",
         "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "2 workers" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    yield Served(proc, line)
    if proc.poll() is None:
        proc.kill()
    proc.wait(30)


def test_two_workers_share_the_port_and_serve(served: Served) -> None:
    workers = _children(served.proc.pid)
    assert len(workers) == 2
    for _ in range(12):
        with ftplib.FTP() as ftp:
            ftp.connect("127.0.0.1", served.port, timeout=20)
            ftp.login("alice", "secret")
            port = int(ftp.sendcmd("EPSV").split("|")[3])
            assert 41000 <= port <= 41019
            chunks: list[bytes] = []
            ftp.retrbinary("RETR hello.txt", chunks.append)
            assert b"".join(chunks) == b"hello from a worker\n"
    # The ready line was printed once, by the parent.
    served.proc.send_signal(signal.SIGTERM)
    out, _ = served.proc.communicate(timeout=30)
    assert served.proc.returncode == 0
    assert "serving" not in out
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)


def test_sigint_stops_every_worker(served: Served) -> None:
    workers = _children(served.proc.pid)
    served.proc.send_signal(signal.SIGINT)
    assert served.proc.wait(30) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)


def test_a_dead_worker_is_replaced_and_the_server_goes_on(served: Served) -> None:
    first, second = _children(served.proc.pid)
    os.kill(first, signal.SIGKILL)
    assert served.proc.stderr is not None
    logged = []
    for line in served.proc.stderr:  # the parent says so as soon as the new one serves
        logged.append(line)
        if "restarted and serving" in line:
            break
    assert any(f"(pid {first}) was killed by signal 9" in line for line in logged), logged
    workers = _children(served.proc.pid)
    assert len(workers) == 2 and second in workers and first not in workers
    assert served.proc.poll() is None
    for _ in range(6):
        with ftplib.FTP() as ftp:
            ftp.connect("127.0.0.1", served.port, timeout=20)
            ftp.login("alice", "secret")
            assert "hello.txt" in ftp.nlst()
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(30) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)


def test_a_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "fileferry", "serve", str(tmp_path), "--port", str(port),
             "--workers", "2"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "fileferry:" in r.stderr


# --- in-process workers (what the suite uses with FILEFERRY_TEST_WORKERS) ------------


def test_server_thread_runs_workers_on_one_port(tmp_path: Path) -> None:
    cfg = config.build(
        {
            "root": str(tmp_path),
            "port": 0,
            "workers": 2,
            "passive_ports": (42000, 42009),
            "login_failure_delay": 0,
        }
    )
    with ServerThread(cfg) as srv:
        assert len(srv.servers) == 2
        assert {s.address for s in srv.servers} == {srv.address}
        slices = [s.config.data.passive_ports for s in srv.servers]
        assert slices == [(42000, 42004), (42005, 42009)]
        clients = []
        try:
            for _ in range(24):
                ftp = ftplib.FTP()
                ftp.connect(*srv.address, timeout=20)
                ftp.login()
                clients.append(ftp)
            counts = srv.call(_session_count)
            assert sum(counts) == 24
            # The kernel spreads connections by a hash of their addresses;
            # 24 all landing on one worker has a probability of 2 in 16 million.
            assert all(c > 0 for c in counts)
        finally:
            for ftp in clients:
                ftp.close()


async def _session_count(server: object) -> int:
    return len(server.app.sessions)  # type: ignore[attr-defined]


# --- uvloop, when installed -----------------------------------------------------------


def test_uvloop_is_used_when_installed_and_can_be_switched_off(monkeypatch) -> None:
    async def loop_module() -> str:
        import asyncio

        return type(asyncio.get_running_loop()).__module__

    monkeypatch.setenv("FILEFERRY_NO_UVLOOP", "1")
    assert eventloop.name() == "asyncio"
    assert eventloop.run(loop_module()).startswith("asyncio")
    monkeypatch.delenv("FILEFERRY_NO_UVLOOP")
    try:
        import uvloop  # noqa: F401
    except ImportError:
        assert eventloop.run(loop_module()).startswith("asyncio")
        return
    assert eventloop.name().startswith("uvloop")
    assert eventloop.run(loop_module()).startswith("uvloop")
