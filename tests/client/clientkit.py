"""Helpers for the client tests: real servers to talk to, a throwaway CA, tree digests."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent.parent / "src"


@dataclass(frozen=True)
class Server:
    """A running server: ``url`` has the user but no password (that goes in the env)."""

    url: str
    root: Path
    user: str
    password: str

    def at(self, path: str = "") -> str:
        return f"{self.url}/{path}"

    @property
    def env(self) -> dict[str, str]:
        return {"FILEFERRY_PASSWORD": self.password}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, str]:
    """Relative path → sha256 of every file under ``root`` (folders as "dir")."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = "dir" if p.is_dir() else sha256(p)
    return out


@contextlib.contextmanager
def pyftpd(
    root: Path,
    log: Path,
    cert: Path | None = None,
    key: Path | None = None,
    user: str = "bob",
    password: str = "builder",
    extra: tuple[str, ...] = (),
) -> Iterator[Server]:
    """pyftpdlib in a subprocess on a free port; killed on exit."""
    cmd = [
        sys.executable,
        str(HERE / "pyftpd_server.py"),
        "--root",
        str(root),
        "--user",
        user,
        "--password",
        password,
    ]
    if cert is not None and key is not None:
        cmd += ["--cert", str(cert), "--key", str(key)]
    cmd += extra
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline().decode() if ready else ""
        if not line.startswith("READY"):
            raise RuntimeError(f"pyftpdlib did not start: {line!r} {log.read_text()[-2000:]}")
        port = int(line.split()[1])
        scheme = "ftps" if cert else "ftp"
        yield Server(f"{scheme}://{user}@127.0.0.1:{port}", root, user, password)
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    preexec=None,
    stdin: int | None = subprocess.DEVNULL,
) -> subprocess.CompletedProcess[str]:
    """``python -m fileferry ARGS`` in a subprocess (for kills, limits and real exit codes)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("FILEFERRY_PASSWORD", "NETRC")}
    full_env["PYTHONPATH"] = str(SRC)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "fileferry", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec,
        stdin=stdin,
        check=False,
    )


def make_ca(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``host``: (ca.pem, cert.pem, key.pem)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("fileferry test CA"))
        .issuer_name(name("fileferry test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(host))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem
