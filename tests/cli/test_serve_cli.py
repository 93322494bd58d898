"""``fileferry serve`` as a user runs it: a real process, its ready line, signals, errors."""

from __future__ import annotations

import ftplib
import io
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

READY = re.compile(r"ftp://(?:\[(?P<v6>[^\]]+)\]|(?P<v4>[\d.]+)):(?P<port>\d+)")


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30):
    return subprocess.run(
        [sys.executable, "-m", "fileferry", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


class Served:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fileferry", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.line = self._ready_line()
        m = READY.search(self.line)
        assert m, self.line
        self.host = m["v6"] or m["v4"]
        self.port = int(m["port"])

    def _ready_line(self, timeout: float = 30) -> str:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            self.proc.kill()
            raise AssertionError("no ready line within 30 s")
        return self.proc.stdout.readline()

    def ftp(self) -> ftplib.FTP:
        f = ftplib.FTP(timeout=20)
        f.connect(self.host, self.port)
        return f

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture
def served_dir(tmp_path: Path) -> Path:
    (tmp_path / "hello.txt").write_bytes(b"hello world\n")
    return tmp_path


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_folder_anonymous_read_only_and_stop_on_signal(served_dir: Path, sig: int) -> None:
    s = Served(str(served_dir), "--port", "0")
    try:
        assert s.host == "127.0.0.1" and s.port > 0
        assert "anonymous read-only" in s.line
        f = s.ftp()
        f.login()
        buf = io.BytesIO()
        f.retrbinary("RETR hello.txt", buf.write)
        assert buf.getvalue() == b"hello world\n"
        with pytest.raises(ftplib.error_perm, match=r"^550"):
            f.storbinary("STOR x", io.BytesIO(b"x"))
        f.quit()
    finally:
        code = s.stop(sig)
    assert code == 0


def test_serve_defaults_to_current_folder(served_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fileferry", "serve", "--port", "0"],
        cwd=served_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert str(served_dir) in line
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_users_write_and_no_anonymous(served_dir: Path) -> None:
    s = Served(str(served_dir), "--port", "0", "--user", "bob:pw1", "--no-anonymous")
    try:
        f = s.ftp()
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            f.login()
        f.login("bob", "pw1")
        f.storbinary("STOR up.txt", io.BytesIO(b"from bob"))
        f.quit()
    finally:
        s.stop()
    assert (served_dir / "up.txt").read_bytes() == b"from bob"


def test_config_file_environment_and_flags(served_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "ff.toml"
    cfg.write_text(
        "port = 1\nanonymous = false\nidle_timeout = 60\n"
        '[[user]]\nname = "carol"\npassword = "pw2"\n'
    )
    # The flag beats the file for the port; the environment turns anonymous back on.
    s = Served(
        str(served_dir),
        "--config",
        str(cfg),
        "--port",
        "0",
        env={"FILEFERRY_ANONYMOUS": "true"},
    )
    try:
        f = s.ftp()
        f.login("carol", "pw2")
        f.quit()
        g = s.ftp()
        g.login()
        g.quit()
    finally:
        s.stop()


def test_ipv6_ready_line(served_dir: Path) -> None:
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("::1 unusable here")
    s = Served(str(served_dir), "--host", "::1", "--port", "0")
    try:
        assert s.host == "::1"
        f = ftplib.FTP(timeout=20)
        f.connect("::1", s.port)
        f.login()
        assert "hello.txt" in f.nlst()
        f.quit()
    finally:
        s.stop()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--port", "abc"], "--port"),
        (["--port", "70000"], "port"),
        (["--passive-ports", "5000-10"], "--passive-ports"),
        (["--passive-ports", "junk"], "--passive-ports"),
        (["--user", "nopassword"], "--user"),
        (["--idle-timeout", "-1"], "idle_timeout"),
        (["--host", "not-an-ip"], "host"),
        (["--masquerade-address", "::1"], "masquerade_address"),
        (["/definitely/not/a/dir"], "not a directory"),
        (["--log-level", "loud"], "--log-level"),
    ],
)
def test_bad_options_give_one_clear_line(args: list[str], needle: str) -> None:
    result = run_cli(
        "serve",
        *args,
        "--port" if "--port" not in args else "--host",
        "0" if "--port" not in args else "127.0.0.1",
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert needle in lines[-1]
    assert "Traceback" not in result.stderr


def test_bad_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("port = 2121\nfavourite_colour = 'blue'\n")
    result = run_cli("serve", str(tmp_path), "--config", str(cfg))
    assert result.returncode == 2
    assert "favourite_colour" in result.stderr and "Traceback" not in result.stderr
    cfg.write_text("port = 'many'\n")
    result = run_cli("serve", str(tmp_path), "--config", str(cfg))
    assert result.returncode == 2 and "port" in result.stderr
    result = run_cli("serve", str(tmp_path), "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2 and "missing.toml" in result.stderr
    result = run_cli("serve", str(tmp_path), env={"FILEFERRY_BOGUS": "1"})
    assert result.returncode == 2 and "FILEFERRY_BOGUS" in result.stderr


def test_port_in_use_says_so(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_cli("serve", str(tmp_path), "--port", str(port))
    assert result.returncode == 1
    assert "already in use" in result.stderr


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).with_name("fileferry")
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "fileferry" in result.stdout


def test_readme_config_examples_load(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.S)
    assert len(blocks) >= 2
    from fileferry import config

    for i, block in enumerate(blocks):
        f = tmp_path / f"example{i}.toml"
        f.write_text(block)
        assert config.load_toml(str(f))


def test_a_user_whose_hash_cannot_be_verified_stops_the_start(tmp_path: Path) -> None:
    cfg = tmp_path / "users.toml"
    cfg.write_text('[[user]]\nname = "cam"\npassword_hash = "$argon2id$typo"\n')
    result = run_cli("serve", str(tmp_path), "--port", "0", "--config", str(cfg))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "'cam'" in line and "password_hash" in line
