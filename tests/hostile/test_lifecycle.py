"""The life cycle on a bad day: a worker killed, a shutdown mid-transfer, a port taken twice.

Real ``fileferry serve`` processes, real clients (ftplib), real signals. No
sleeps: every wait is for something the server says (its ready line, a log
line, a reply) or for a process to end.
"""

from __future__ import annotations

import ftplib
import hashlib
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fileferry.server.thread import ServerThread
from fileferry.storage.local import TEMP_PREFIX

READY = re.compile(r"ftp://127\.0\.0\.1:(?P<port>\d+)")
BIG = 48 * 1024 * 1024


class Serve:
    """One ``fileferry serve`` process; its stderr is collected line by line as it comes."""

    def __init__(self, root: Path, *args: str, session: bool = False) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("FILEFERRY_WORKERS", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fileferry", "serve", str(root), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            start_new_session=session,  # its own process group, as in a terminal
        )  # fmt: skip
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(60):
            self.proc.kill()
            raise AssertionError("no ready line within 60 s")
        self.ready = self.proc.stdout.readline()
        m = READY.search(self.ready)
        assert m, (self.ready, self.stderr())
        self.port = int(m["port"])

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()
        with self._seen:
            self.lines.append("")  # end of stream
            self._seen.notify_all()

    def stderr(self) -> str:
        with self._seen:
            return "".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 60, start: int = 0) -> re.Match[str]:
        """The first stderr line from index ``start`` on that matches ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._seen:
            index = start
            while True:
                while index < len(self.lines):
                    m = regex.search(self.lines[index])
                    if m:
                        return m
                    if self.lines[index] == "":
                        raise AssertionError(f"{pattern!r} never logged:\n{self.stderr_locked()}")
                    index += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{pattern!r} not logged in time:\n{self.stderr_locked()}")
                self._seen.wait(left)

    def stderr_locked(self) -> str:
        return "".join(self.lines)

    def ftp(self, user: str = "alice", password: str = "secret") -> ftplib.FTP:
        f = ftplib.FTP(timeout=30)
        f.connect("127.0.0.1", self.port)
        f.login(user, password)
        f.voidcmd("TYPE I")
        return f

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._reader.join(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()
        print(self.stderr())  # shown by pytest when the test failed


@pytest.fixture
def root(tmp_path: Path) -> Path:
    d = tmp_path / "root"
    d.mkdir()
    (d / "big.bin").write_bytes(os.urandom(BIG))
    (d / "small.txt").write_bytes(b"small\n")
    return d


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _serve(root: Path, *args: str, session: bool = False) -> Serve:
    return Serve(
        root, "--port", "0", "--user", "alice:secret", "--no-anonymous", *args, session=session
    )


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


def _serving_pid(candidates: list[int], client: socket.socket) -> int:
    """Which of ``candidates`` holds the server end of ``client``'s connection."""
    port = client.getsockname()[1]
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for row in f:
                cells = row.split()
                if int(cells[2].rsplit(":", 1)[1], 16) == port:  # remote end: the client
                    inodes.add(f"socket:[{cells[9]}]")
    for pid in candidates:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker holds the connection from port {port}")


def _no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


# --- 7: one port, one server ------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [(["--workers", "2"], ["--workers", "2"]), (["--workers", "2"], []), ([], ["--workers", "2"])],
    ids=["workers-then-workers", "workers-then-single", "single-then-workers"],
)
def test_a_second_server_on_a_taken_port_says_already_in_use(
    root: Path, first: list[str], second: list[str]
) -> None:
    served = _serve(root, *first)
    try:
        env = {**os.environ}
        env.pop("FILEFERRY_WORKERS", None)
        r = subprocess.run(
            [sys.executable, "-m", "fileferry", "serve", str(root), "--port", str(served.port),
             *second],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert r.stderr.strip() == f"fileferry: port {served.port} on 127.0.0.1 is already in use"
        assert r.stdout == ""
        # The first server still has every connection.
        for _ in range(6):
            with served.ftp() as f:
                assert f.nlst() == sorted(f.nlst()) and "small.txt" in f.nlst()
    finally:
        served.proc.send_signal(signal.SIGTERM)
        assert served.wait() == 0
    assert "Traceback" not in served.stderr()


# --- 3: a dead worker is restarted; the others keep serving -----------------------------


def test_a_killed_worker_restarts_and_a_download_on_another_goes_on(root: Path) -> None:
    served = _serve(root, "--workers", "2", "--log-level", "info")
    try:
        workers = _children(served.proc.pid)
        assert len(workers) == 2
        expected = _sha((root / "big.bin").read_bytes())
        ftp = served.ftp()
        healthy = _serving_pid(workers, ftp.sock)
        (victim,) = [pid for pid in workers if pid != healthy]
        conn = ftp.transfercmd("RETR big.bin")
        received = [conn.recv(1 << 20)]
        os.kill(victim, signal.SIGKILL)
        served.wait_for_log(rf"worker \d \(pid {victim}\) was killed by signal 9")
        while chunk := conn.recv(1 << 20):
            received.append(chunk)
        conn.close()
        assert ftp.voidresp().startswith("226")
        assert _sha(b"".join(received)) == expected
        ftp.quit()
        # The slot is filled again, by a new process that serves.
        served.wait_for_log(r"worker \d \(pid \d+\) restarted")
        now = _children(served.proc.pid)
        assert len(now) == 2 and healthy in now and victim not in now
        for _ in range(8):
            with served.ftp() as f:
                assert "small.txt" in f.nlst()
    finally:
        served.proc.send_signal(signal.SIGTERM)
        code = served.wait()
    assert code == 0
    assert "Traceback" not in served.stderr()


def test_restart_delays_back_off_and_reset_after_a_stable_run() -> None:
    from fileferry.server.supervisor import Backoff

    b = Backoff(first=1.0, limit=60.0, stable=30.0)
    # The first death of a worker that ran a while: restart at once.
    assert b.next_delay(uptime=3600) == 0
    # Then it keeps dying at once: 1, 2, 4 ... 60 s.
    assert [b.next_delay(uptime=0.1) for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    # A run long enough forgives the past.
    assert b.next_delay(uptime=30) == 0
    assert b.next_delay(uptime=0.1) == 1


# --- 6: SIGTERM drains ---------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_lets_a_running_download_finish_and_tells_idle_sessions_421(
    root: Path, workers: str
) -> None:
    served = _serve(root, "--workers", workers, "--shutdown-grace", "60")
    try:
        expected = _sha((root / "big.bin").read_bytes())
        idle = [served.ftp() for _ in range(3)]
        busy = served.ftp()
        conn = busy.transfercmd("RETR big.bin")
        received = [conn.recv(1 << 20)]
        served.proc.send_signal(signal.SIGTERM)
        for f in idle:
            with pytest.raises(ftplib.error_temp, match=r"^421"):
                f.getresp()
            assert f.sock.recv(1) == b""  # and closed
        if workers == "1":
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", served.port), timeout=10)
        while chunk := conn.recv(1 << 20):
            received.append(chunk)
        conn.close()
        assert busy.voidresp().startswith("226")
        assert _sha(b"".join(received)) == expected
        with pytest.raises(ftplib.error_temp, match=r"^421"):
            busy.getresp()
        assert served.wait() == 0
    finally:
        served.close()
    assert "Traceback" not in served.stderr()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_transfers_still_running_after_the_grace_are_aborted_and_uploads_discarded(
    root: Path, workers: str
) -> None:
    served = _serve(root, "--workers", workers, "--shutdown-grace", "1")
    try:
        up = served.ftp()
        sink = up.transfercmd("STOR up.bin")
        sink.sendall(os.urandom(1 << 20))  # then nothing more: a stalled client
        down = served.ftp()
        source = down.transfercmd("RETR big.bin")
        assert source.recv(1 << 16)  # then it reads no more
        served.proc.send_signal(signal.SIGTERM)
        for f in (up, down):
            with pytest.raises(ftplib.error_temp, match=r"^426"):
                f.getresp()
            with pytest.raises(ftplib.error_temp, match=r"^421"):
                f.getresp()
        assert served.wait() == 0
        sink.close()
        source.close()
    finally:
        served.close()
    assert not (root / "up.bin").exists()
    assert _no_temp_files(root)
    assert "Traceback" not in served.stderr()


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_signal_stops_at_once(root: Path, workers: str, second: int) -> None:
    served = _serve(root, "--workers", workers, "--shutdown-grace", "600")
    try:
        idle = served.ftp()
        up = served.ftp()
        sink = up.transfercmd("STOR up.bin")
        sink.sendall(os.urandom(1 << 20))
        served.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ftplib.error_temp, match=r"^421"):
            idle.getresp()  # the drain has begun
        started = time.monotonic()
        served.proc.send_signal(second)
        with pytest.raises(ftplib.error_temp, match=r"^426"):
            up.getresp()
        with pytest.raises(ftplib.error_temp, match=r"^421"):
            up.getresp()
        assert served.wait() == 0
        assert time.monotonic() - started < 30  # far from the 600 s grace
        sink.close()
    finally:
        served.close()
    assert not (root / "up.bin").exists()
    assert _no_temp_files(root)
    assert "Traceback" not in served.stderr()


def test_one_ctrl_c_in_a_terminal_drains_every_worker_and_a_second_stops_them(root: Path) -> None:
    """A terminal's Ctrl-C reaches the parent and every worker at once: that
    one keypress must drain, not count as the "second signal" on a worker."""
    served = _serve(root, "--workers", "2", "--shutdown-grace", "600", session=True)
    try:
        idle = served.ftp()
        busy = served.ftp()
        conn = busy.transfercmd("RETR big.bin")
        assert conn.recv(1 << 16)
        os.killpg(served.proc.pid, signal.SIGINT)
        with pytest.raises(ftplib.error_temp, match=r"^421"):
            idle.getresp()
        received = 0
        while chunk := conn.recv(1 << 20):  # the download goes on to its end
            received += len(chunk)
            if received > BIG // 2:
                break
        assert received > BIG // 2
        os.killpg(served.proc.pid, signal.SIGINT)  # the second Ctrl-C
        with pytest.raises(ftplib.error_temp, match=r"^426"):
            busy.getresp()
        with pytest.raises(ftplib.error_temp, match=r"^421"):
            busy.getresp()
        assert served.wait() == 0
        conn.close()
    finally:
        served.close()
    assert "Traceback" not in served.stderr()


def test_shutdown_grace_is_a_setting_with_key_variable_and_flag() -> None:
    from fileferry import config

    assert config.build({"root": "."}).shutdown_grace == 30.0
    assert config.from_environment({"FILEFERRY_SHUTDOWN_GRACE": "5"}) == {"shutdown_grace": 5.0}
    r = subprocess.run(
        [sys.executable, "-m", "fileferry", "config", "keys"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    (row,) = [line for line in r.stdout.splitlines() if line.startswith("shutdown_grace ")]
    assert "FILEFERRY_SHUTDOWN_GRACE" in row and "--shutdown-grace" in row and "30" in row


# --- 3: a worker killed inside a critical section of the shared limits -------------------


def test_a_worker_killed_holding_the_lock_does_not_block_the_others(tmp_path: Path) -> None:
    """The supervisor frees the lock a dead worker held, at once: the other
    workers' next admission or login does not wait for the lock timeout, and
    never fails with LockLost (a traceback and a refused login)."""
    from fileferry import config
    from fileferry.limits.shared import SharedLimits
    from fileferry.server.supervisor import Supervisor

    cfg = config.build({"root": str(tmp_path), "workers": 2})
    shared = SharedLimits(cfg, 2)
    counter = shared.for_worker(1).session_slots()
    assert counter.admit("192.0.2.1") is None
    inside = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the dying worker
        try:
            worker = shared.for_worker(0).session_slots()
            assert worker.admit("192.0.2.7") is None
            shared.lock.__enter__()  # and killed before it leaves
            os.write(inside[1], b"in")
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            signal.sigwait({signal.SIGTERM})  # never comes
        finally:
            os._exit(0)
    os.close(inside[1])
    assert os.read(inside[0], 2) == b"in"
    os.kill(pid, signal.SIGKILL)
    supervisor = Supervisor([cfg, cfg], shared, (socket.socket(), None), lambda *a: None)
    supervisor.stopping = True  # reap only; no restart
    supervisor.slots[0].pid = pid
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped
    supervisor._reap()
    assert supervisor.slots[0].pid == 0
    started = time.monotonic()
    assert counter.admit("192.0.2.2") is None  # the lock is free again
    assert time.monotonic() - started < 1.0
    assert counter.total == 2  # worker 0's session is forgotten, worker 1's kept
    supervisor.listeners[0].close()


# --- 6, embedded: FTPServer.stop(grace=...) ------------------------------------------------


def _embedded(root: Path) -> tuple[ServerThread, ftplib.FTP]:
    from fileferry import config

    cfg = config.build({"root": str(root), "port": 0, "login_failure_delay": 0})
    srv = ServerThread(cfg).start()
    f = ftplib.FTP(timeout=30)
    f.connect(*srv.address)
    f.login()
    f.voidcmd("TYPE I")
    return srv, f


def test_embedded_stop_with_a_grace_lets_a_download_finish(root: Path) -> None:
    srv, f = _embedded(root)
    try:
        conn = f.transfercmd("RETR big.bin")
        received = [conn.recv(1 << 20)]
        stopper = threading.Thread(target=srv.call, args=(lambda s: s.stop(grace=60),))
        stopper.start()
        while chunk := conn.recv(1 << 20):
            received.append(chunk)
        conn.close()
        assert f.voidresp().startswith("226")
        with pytest.raises(ftplib.error_temp, match=r"^421"):
            f.getresp()
        stopper.join(60)
        assert not stopper.is_alive()
        assert _sha(b"".join(received)) == _sha((root / "big.bin").read_bytes())
    finally:
        srv.stop()


def test_embedded_stop_alone_aborts_a_transfer_with_426_then_421(root: Path) -> None:
    srv, f = _embedded(root)
    conn = f.transfercmd("RETR big.bin")
    assert conn.recv(1 << 16)
    srv.stop()
    with pytest.raises(ftplib.error_temp, match=r"^426"):
        f.getresp()
    with pytest.raises(ftplib.error_temp, match=r"^421"):
        f.getresp()
    conn.close()
