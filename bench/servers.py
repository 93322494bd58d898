"""The servers the benchmark compares, each started from a config written to a temp dir.

Every server gets its own root (fixtures hard-linked, so the page cache is
shared and every server reads the same cached pages) on a free loopback
port, and is stopped with SIGTERM (then SIGKILL) at the end. A server whose
program is missing or that does not answer within a few seconds is skipped,
with the reason printed, instead of failing the whole run.

Logins: fileferry and pyftpdlib use a named user ``bench`` (fileferry
stores only a salted scrypt hash, pyftpdlib's default authorizer compares
plaintext); pure-ftpd uses a virtual user from its PureDB (crypt hash);
vsftpd uses anonymous login, because its named users need PAM and a system
account. Nothing here installs anything: see bench/README.md.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
NOBODY = 65534

#: Every row name; a server lists the rows it takes part in.
ALL_ROWS = (
    "a_retr",
    "b_stor",
    "c_login",
    "d_retr_many",
    "e_stor_many",
    "f_retr_idle",
    "f_stor_idle",
    "h_small",
    "i_list",
    "tls_retr",
    "tls_stor",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """One running server under test."""

    name: str
    root: Path
    port: int = 0
    user: str = "bench"
    password: str = "bench"
    proc: subprocess.Popen[bytes] | None = None
    rows: tuple[str, ...] = ALL_ROWS
    tls: bool = False
    version: str = ""
    #: Shown in the report: what differs from the server's defaults.
    note: str = ""
    log: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def takes(self, row: str) -> bool:
        return row in self.rows and (self.tls or not row.startswith("tls_"))

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class Unavailable(Exception):
    """This server cannot run here (missing program, failed start)."""


def wait_ready(server: Server, timeout: float = 15.0) -> None:
    """Until the server answers with a 220 banner, or the process died."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        assert server.proc is not None
        if server.proc.poll() is not None:
            raise Unavailable(f"exited with status {server.proc.returncode}: {tail(server.log)}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
                banner = s.recv(512)
                if banner.startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return
                last = banner.decode(errors="replace")
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise Unavailable(f"did not answer within {timeout:.0f} s ({last})")


def tail(path: Path | None, lines: int = 3) -> str:
    if path is None or not path.exists():
        return ""
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def spawn(server: Server, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    server.log = cwd / f"{server.name}.log"
    with open(server.log, "wb") as log:
        server.proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **(env or {})},
        )
    try:
        wait_ready(server)
    except Unavailable:
        server.stop()
        raise


# --- fileferry -------------------------------------------------------------------


def fileferry_version() -> str:
    out = subprocess.run(
        [PYTHON, "-m", "fileferry", "--version"], capture_output=True, text=True, check=False
    )
    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio loop"
    return f"{out.stdout.strip()} ({loop})"


def start_fileferry(
    server: Server,
    work: Path,
    *,
    extra: tuple[str, ...] = (),
    cert: Path | None = None,
    source: Path | None = None,
) -> None:
    """``source``: another checkout whose ``src/`` runs instead of this one (``--baseline``)."""
    argv = [PYTHON, "-m", "fileferry", "serve", str(server.root), "--host", "127.0.0.1"]
    argv += ["--port", str(server.port), "--user", "bench:bench", "--no-anonymous", *extra]
    if fileferry_has_flag("--max-sessions-per-ip"):
        # Every benchmark client comes from 127.0.0.1; the default cap is 200.
        argv += ["--max-sessions-per-ip", "5000", "--max-sessions", "5000"]
    server.note = "; ".join(
        filter(None, [server.note, "per-address session cap and command rate cap raised"])
    )
    if cert is not None:
        argv += ["--tls-cert", str(cert), "--tls-key", str(cert)]
    server.version = fileferry_version()
    # The anti-flood cap (500 commands/s per session by default) would otherwise
    # be what row (h) measures: one client moving 1,000 files issues ~2 commands each.
    env = {"FILEFERRY_MAX_COMMANDS_PER_SECOND": "1000000"}
    if source is not None:
        # PYTHONPATH comes before the editable install on sys.path.
        env["PYTHONPATH"] = str(source / "src")
        server.version += f" from {source}"
    spawn(server, argv, work, env)


@functools.cache
def fileferry_has_flag(flag: str) -> bool:
    """Whether this checkout's ``fileferry serve`` knows ``flag`` (work in progress lands)."""
    out = subprocess.run(
        [PYTHON, "-m", "fileferry", "serve", "--help"], capture_output=True, text=True, check=False
    )
    return flag in out.stdout


# --- pyftpdlib --------------------------------------------------------------------

_PYFTPDLIB = """\
import sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.servers import FTPServer
root, port, cert = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if cert:
    from pyftpdlib.handlers import TLS_FTPHandler as Handler
    Handler.certfile = cert
else:
    from pyftpdlib.handlers import FTPHandler as Handler
authorizer = DummyAuthorizer()
authorizer.add_user("bench", "bench", root, perm="elradfmwMT")
Handler.authorizer = authorizer
server = FTPServer(("127.0.0.1", port), Handler)
# Its default of 512 counts data connections too: 300 clients transferring at
# once need 600 (the caps of fileferry and pure-ftpd are raised the same way).
server.max_cons = 4096
server.serve_forever()
"""


def start_pyftpdlib(server: Server, work: Path, cert: Path | None = None) -> None:
    try:
        import pyftpdlib
    except ImportError:
        raise Unavailable("pyftpdlib is not installed (pip install pyftpdlib)") from None
    if cert is not None:
        try:
            import OpenSSL  # noqa: F401
        except ImportError:
            raise Unavailable("pyOpenSSL is not installed (pip install pyopenssl)") from None
    script = work / "pyftpdlib_server.py"
    script.write_text(_PYFTPDLIB)
    server.version = f"pyftpdlib {pyftpdlib.__ver__}"
    server.note = "max_cons raised to 4096"
    argv = [PYTHON, str(script), str(server.root), str(server.port), str(cert or "")]
    spawn(server, argv, work)


# --- vsftpd ------------------------------------------------------------------------


def find_vsftpd() -> str | None:
    """Debian's vsftpd conflicts with pure-ftpd, so it may be unpacked under /opt."""
    for candidate in (shutil.which("vsftpd"), "/usr/sbin/vsftpd", "/opt/vsftpd/usr/sbin/vsftpd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def anon_user() -> str:
    """A system account with an existing home: vsftpd enters it before ``anon_root``."""
    import pwd

    candidates = sorted(
        pwd.getpwall(), key=lambda p: (p.pw_name not in ("ftp", "nobody"), p.pw_uid)
    )
    for entry in candidates:
        if entry.pw_uid != 0 and os.path.isdir(entry.pw_dir):
            return entry.pw_name
    raise Unavailable("no system account with a home folder for anonymous sessions")


def start_vsftpd(server: Server, work: Path, cert: Path | None = None) -> None:
    binary = find_vsftpd()
    if binary is None:
        raise Unavailable("vsftpd is not installed (see bench/README.md)")
    if os.geteuid() != 0:
        raise Unavailable("vsftpd's anonymous mode needs root to drop privileges")
    empty = work / "vsftpd-empty"
    empty.mkdir(exist_ok=True)
    os.chmod(empty, 0o755)
    lines = {
        "listen": "YES",
        "listen_ipv6": "NO",
        "listen_address": "127.0.0.1",
        "listen_port": str(server.port),
        "background": "NO",
        "anonymous_enable": "YES",
        "local_enable": "NO",
        "write_enable": "YES",
        "anon_upload_enable": "YES",
        "anon_mkdir_write_enable": "YES",
        "anon_other_write_enable": "YES",
        "anon_umask": "022",
        "anon_root": str(server.root),
        "ftp_username": anon_user(),
        "nopriv_user": "nobody",
        "secure_chroot_dir": str(empty),
        "seccomp_sandbox": "NO",
        "max_clients": "0",
        "max_per_ip": "0",
        "xferlog_enable": "NO",
        "idle_session_timeout": "600",
        "pasv_enable": "YES",
        "pasv_address": "127.0.0.1",
    }
    if cert is not None:
        lines.update(
            {
                "ssl_enable": "YES",
                "allow_anon_ssl": "YES",
                "force_anon_logins_ssl": "NO",
                "force_anon_data_ssl": "NO",
                "rsa_cert_file": str(cert),
                "rsa_private_key_file": str(cert),
                "require_ssl_reuse": "YES",
                "ssl_ciphers": "HIGH",
            }
        )
    conf = work / f"{server.name}.conf"
    conf.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
    os.chmod(conf, 0o600)
    # vsftpd -v prints its version on standard input's descriptor (fd 0), so give it a pipe.
    reader, writer = os.pipe()
    try:
        subprocess.run([binary, "-v"], stdin=writer, capture_output=True, check=False, timeout=10)
        os.close(writer)
        writer = -1
        text = os.read(reader, 4096).decode(errors="replace").strip()
    finally:
        os.close(reader)
        if writer >= 0:
            os.close(writer)
    server.version = text.replace("vsftpd: version", "vsftpd") or "vsftpd"
    server.user, server.password = "anonymous", "bench@"
    server.note = "anonymous login (named users need PAM)"
    spawn(server, [binary, str(conf)], work)


# --- pure-ftpd ----------------------------------------------------------------------


def start_pureftpd(server: Server, work: Path, cert: Path | None = None) -> None:
    binary, pure_pw = shutil.which("pure-ftpd"), shutil.which("pure-pw")
    if binary is None or pure_pw is None:
        raise Unavailable("pure-ftpd is not installed (apt-get install -y pure-ftpd)")
    if os.geteuid() != 0:
        raise Unavailable("pure-ftpd's virtual users need root to change uid")
    passwd, pdb = work / f"{server.name}.passwd", work / f"{server.name}.pdb"
    passwd.unlink(missing_ok=True)
    add = [pure_pw, "useradd", "bench", "-f", str(passwd), "-u", str(NOBODY)]
    add += ["-g", str(NOBODY), "-d", str(server.root)]
    subprocess.run(add, input=b"bench\nbench\n", capture_output=True, check=True)
    # pure-pw hashes with Argon2id at t=511 by default: seconds of CPU per login,
    # which would turn every row that opens 300 sessions into minutes. Use the
    # glibc default of /etc/shadow instead (SHA-512 crypt, 5000 rounds).
    openssl = shutil.which("openssl")
    if openssl is not None:
        crypted = subprocess.run(
            [openssl, "passwd", "-6", "bench"], capture_output=True, text=True, check=True
        ).stdout.strip()
        fields = passwd.read_text().split(":")
        fields[1] = crypted
        passwd.write_text(":".join(fields))
        server.note = "virtual user, SHA-512 crypt hash"
    subprocess.run([pure_pw, "mkdb", str(pdb), "-f", str(passwd)], capture_output=True, check=True)
    argv = [binary, "-S", f"127.0.0.1,{server.port}", "-l", f"puredb:{pdb}", "-E", "-A", "-H"]
    argv += ["-c", "2000", "-C", "2000", "-I", "15"]
    if cert is not None:
        argv += ["-Y", "1", "-2", str(cert)]
    help_text = subprocess.run([binary, "--help"], capture_output=True, check=False)
    first = (help_text.stdout or help_text.stderr).decode(errors="replace").splitlines()
    server.version = first[0].split("[")[0].strip() if first else "pure-ftpd"
    spawn(server, argv, work)


# --- the ceiling --------------------------------------------------------------------


def start_responder(server: Server, work: Path) -> None:
    server.version = "bench/responder.py (in-memory, sendfile from a memfd)"
    argv = [PYTHON, str(REPO / "bench" / "responder.py"), str(server.root)]
    argv += ["--port", str(server.port)]
    spawn(server, argv, work)


def make_cert(work: Path) -> Path | None:
    """A self-signed key+certificate in one PEM file, or None without openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    pem = work / "bench-cert.pem"
    if not pem.exists():
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
             "-subj", "/CN=127.0.0.1", "-keyout", str(pem), "-out", str(pem)],
            capture_output=True,
            check=True,
        )  # fmt: skip
        os.chmod(pem, 0o600)
    return pem


def kill_all(servers: list[Server]) -> None:
    for s in servers:
        with contextlib.suppress(Exception):
            s.stop()
