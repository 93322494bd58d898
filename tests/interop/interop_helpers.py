"""Helpers for the interoperability tests (curl, lftp): data, digests, listings, servers.

Kept out of ``conftest.py`` so that test modules can import them by a unique
module name.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import socket
import subprocess
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from fileferry.server.thread import ServerThread

#: Upper bound for any one client run; generous, tests normally take well under a second.
CLIENT_TIMEOUT = 60

USER = "alice"
PASSWORD = "secret"

SIZES = {"0B": 0, "1B": 1, "64KiB": 64 * 1024, "10MiB": 10 * 1024 * 1024}


def require_tool(name: str) -> str:
    """Absolute path of ``name``; skip when missing, but fail under CI."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{name} is required in CI but is not installed", pytrace=False)
        pytest.skip(f"{name} is not installed")
    return path


def ipv6_loopback_usable() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            with socket.create_connection(("::1", port), timeout=5):
                pass
    except OSError:
        return False
    return True


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes (reproducible failures)."""
    return random.Random(f"{seed}:{size}").randbytes(size)


def tree_digests(root: Path) -> dict[str, str]:
    """``relative/path -> sha256`` for every regular file under ``root``."""
    return {
        p.relative_to(root).as_posix(): file_sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def make_tree(root: Path, files: int = 50, seed: int = 1) -> dict[str, str]:
    """Write ``files`` random files in nested directories under ``root``."""
    rng = random.Random(seed)
    dirs = ["", "a", "a/b", "a/b/c", "d", "d/e", "数据", "数据/子目录"]
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "empty-dir").mkdir(exist_ok=True)
    for i in range(files):
        d = dirs[i % len(dirs)]
        size = rng.choice([0, 1, 17, 1000, 4096, 65536, 200_000])
        name = f"file {i:02d}.bin" if i % 7 == 3 else f"f{i:02d}.dat"
        (root / d / name).write_bytes(rng.randbytes(size))
    return tree_digests(root)


# --- LIST output ------------------------------------------------------------------

_LS_LINE = re.compile(
    r"^(?P<mode>[-dlbcps][-rwxsStT]{9})\s+(?P<links>\d+)\s+(?P<owner>\S+)\s+(?P<group>\S+)\s+"
    r"(?P<size>\d+)\s+(?P<month>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?P<time>\d{2}:\d{2}|\d{4})"
    r" (?P<name>.+)$"
)


@dataclass(frozen=True)
class ListEntry:
    name: str
    size: int
    is_dir: bool
    mode: str


def parse_ls_lines(text: str) -> dict[str, ListEntry]:
    """Parse Unix ``ls -l`` lines (as LIST sends them); every line must parse."""
    entries: dict[str, ListEntry] = {}
    for line in text.splitlines():
        line = line.rstrip("\r")
        if not line or line.startswith("total "):
            continue
        m = _LS_LINE.match(line)
        assert m is not None, f"unparseable LIST line: {line!r}"
        name = m["name"]
        entries[name] = ListEntry(name, int(m["size"]), m["mode"].startswith("d"), m["mode"])
    return entries


# --- servers ----------------------------------------------------------------------


@dataclass
class Server:
    thread: ServerThread
    root: Path
    host: str
    port: int

    @property
    def url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def url(self, path: str = "/", *, user: str | None = None) -> str:
        """``ftp://`` URL of ``path`` (percent-encoded, so non-ASCII names work)."""
        creds = f"{urllib.parse.quote(user, safe=':')}@" if user else ""
        quoted = urllib.parse.quote(path if path.startswith("/") else "/" + path, safe="/;=")
        return f"ftp://{creds}{self.url_host}:{self.port}{quoted}"


#: ``start_server(**config_overrides) -> Server`` (the fixture in conftest.py).
ServerFactory = Callable[..., Server]


def client_env(home: Path) -> dict[str, str]:
    """Environment for client subprocesses: UTF-8 locale, no proxies, private HOME."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and k.lower() not in ("http_proxy", "all_proxy")
    }
    env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8", HOME=str(home))
    env.pop("LFTP_HOME", None)
    env.pop("CURL_HOME", None)
    return env


def run_client(
    argv: list[str], *, cwd: Path, home: Path, input_bytes: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=client_env(home),
        input=input_bytes,
        stdin=None if input_bytes is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=CLIENT_TIMEOUT,
        check=False,
    )


# --- clients ----------------------------------------------------------------------


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


@dataclass
class Result:
    """A finished client run; ``log`` is stdout+stderr for assertion messages."""

    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return _text(self.stdout)

    @property
    def err(self) -> str:
        return _text(self.stderr)

    @property
    def log(self) -> str:
        return f"exit {self.returncode}\n--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"


@dataclass
class Curl:
    """curl as a subprocess: ``-q`` (no .curlrc), verbose protocol log on stderr."""

    binary: str
    cwd: Path
    home: Path

    def _argv(self, args: tuple[str, ...]) -> list[str]:
        return [
            self.binary,
            "-q",
            "--silent",
            "--show-error",
            "--verbose",
            "--connect-timeout",
            "10",
            "--max-time",
            str(CLIENT_TIMEOUT - 10),
            "--noproxy",
            "*",
            *args,
        ]

    def __call__(self, *args: str, input_bytes: bytes | None = None) -> Result:
        argv = self._argv(args)
        p = run_client(argv, cwd=self.cwd, home=self.home, input_bytes=input_bytes)
        return Result(p.returncode, p.stdout, p.stderr)

    def ok(self, *args: str) -> Result:
        r = self(*args)
        assert r.returncode == 0, r.log
        return r

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """Start curl without waiting (for concurrency tests); see :meth:`finish`."""
        return subprocess.Popen(
            self._argv(args),
            cwd=self.cwd,
            env=client_env(self.home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    @staticmethod
    def finish(proc: subprocess.Popen[bytes]) -> Result:
        try:
            out, err = proc.communicate(timeout=CLIENT_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"curl timed out: {err.decode(errors='replace')}") from None
        return Result(proc.returncode, out, err)


#: Settings so lftp never waits long, never retries, never tries TLS, exits on the
#: first failing command, and never reads or writes anything but named files.
LFTP_SETTINGS = (
    "set cmd:fail-exit yes",
    "set cmd:interactive no",
    "set net:max-retries 1",
    "set net:timeout 10",
    "set net:reconnect-interval-base 1",
    "set net:persist-retries 0",
    "set ftp:ssl-allow no",
    "set ftp:charset utf-8",
    "set file:charset utf-8",
    "set cache:enable no",
    "set xfer:clobber yes",
    "set xfer:use-temp-file no",
    "set dns:order 'inet inet6'",
)


def lftp_quote(arg: str) -> str:
    """Quote one word for lftp's command parser."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Lftp:
    """lftp as a subprocess: ``-c`` with safe settings, ``debug`` output on stderr."""

    binary: str
    cwd: Path
    home: Path

    def __call__(
        self,
        server: Server,
        *commands: str,
        user: tuple[str, str] | None = None,
        settings: tuple[str, ...] = (),
        debug: bool = True,
    ) -> Result:
        login = f"-u {lftp_quote(user[0] + ',' + user[1])} " if user else ""
        script = [
            *LFTP_SETTINGS,
            *settings,
            *(["debug -t 5"] if debug else []),
            f"open {login}ftp://{server.url_host}:{server.port}",
            *commands,
        ]
        argv = [self.binary, "--norc", "-c", "\n".join(script)]
        p = run_client(argv, cwd=self.cwd, home=self.home)
        return Result(p.returncode, p.stdout, p.stderr)

    def ok(
        self,
        server: Server,
        *commands: str,
        user: tuple[str, str] | None = None,
        settings: tuple[str, ...] = (),
        debug: bool = True,
    ) -> Result:
        r = self(server, *commands, user=user, settings=settings, debug=debug)
        assert r.returncode == 0, r.log
        return r


#: File names that have tripped up FTP servers: spaces at either end, URL and
#: glob metacharacters, quotes, non-BMP characters, a leading dash, a long name.
ODD_NAMES = (
    "space in name.txt",
    " leading space.txt",
    "trailing space.txt ",
    "hash#.txt",
    "percent%20.txt",
    "amp&semi;colon.txt",
    "[brackets].txt",
    "quote'single.txt",
    'quote"double.txt',
    "emoji😀.txt",
    "ünïcödé.txt",
    "-dash.txt",
    "x" * 200 + ".txt",
)


#: Beyond 4 GiB, so 32-bit sizes and offsets anywhere would show.
HUGE_SIZE = 5 * 1024**3 + 123


def make_sparse(path: Path, size: int, tail: bytes) -> None:
    """A file of ``size`` bytes, all holes except ``tail`` at its very end."""
    with open(path, "wb") as fh:
        fh.truncate(size - len(tail))
        fh.seek(size - len(tail))
        fh.write(tail)
