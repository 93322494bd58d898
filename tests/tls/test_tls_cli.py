"""FTPS from the command line: certificates, self-signed quick start, SIGHUP reload."""

from __future__ import annotations

import ftplib
import io
import re
import selectors
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path

from tlskit import ReusingFTP_TLS, client_context, make_certs, peer_fingerprint

READY = re.compile(r"ftp://127\.0\.0\.1:(\d+)")


def read_line(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    assert sel.select(timeout), "no output from the server"
    return proc.stdout.readline()


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fileferry", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, read_line(proc)


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_self_signed_quick_start_prints_its_fingerprint(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_bytes(b"tls")
    proc, line = start(str(tmp_path), "--tls-self-signed")
    try:
        assert "TLS available" in line
        port = int(READY.search(line)[1])  # type: ignore[index]
        assert proc.stdout is not None
        fp_line = proc.stdout.readline()  # printed right after the ready line
        printed = re.search(r"fingerprint ([0-9A-F:]{95})", fp_line)
        assert printed, fp_line
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the fingerprint is how a user checks it
        f = ReusingFTP_TLS(context=ctx, timeout=20)
        f.connect("127.0.0.1", port)
        f.auth()
        assert peer_fingerprint(f.sock) == printed[1]
        f.login()
        f.prot_p()
        buf = io.BytesIO()
        f.retrbinary("RETR f.txt", buf.write)
        assert buf.getvalue() == b"tls"
        f.quit()
    finally:
        assert stop(proc) == 0


def test_sighup_reloads_the_certificate_without_dropping_sessions(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "f.txt").write_bytes(b"before and after")
    first = make_certs(tmp_path / "first", cn="first")
    second = make_certs(tmp_path / "second", cn="second")
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(first.cert, live / "cert.pem")
    shutil.copy(first.key, live / "key.pem")
    proc, line = start(
        str(tmp_path / "root"),
        "--tls-cert",
        str(live / "cert.pem"),
        "--tls-key",
        str(live / "key.pem"),
    )
    try:
        port = int(READY.search(line)[1])  # type: ignore[index]
        old = ReusingFTP_TLS(context=client_context(first.ca), timeout=20)
        old.connect("127.0.0.1", port)
        old.auth()
        old.login()
        old.prot_p()
        shutil.copy(second.cert, live / "cert.pem")
        shutil.copy(second.key, live / "key.pem")
        proc.send_signal(signal.SIGHUP)
        assert proc.stderr is not None
        # Wait for the server to say it reloaded (the log line), not for a clock.
        for _ in range(200):
            err_line = proc.stderr.readline()
            if "certificate reloaded" in err_line:
                break
        else:
            raise AssertionError("no reload log line")
        new = ReusingFTP_TLS(context=client_context(second.ca), timeout=20)
        new.connect("127.0.0.1", port)
        new.auth()
        new.login()
        new.prot_p()
        for f in (old, new):
            buf = io.BytesIO()
            f.retrbinary("RETR f.txt", buf.write)
            assert buf.getvalue() == b"before and after"
            f.quit()
        with ftplib.FTP_TLS(context=client_context(first.ca), timeout=20) as stale:
            stale.connect("127.0.0.1", port)
            try:
                stale.auth()
                raise AssertionError("the old certificate is still served")
            except ssl.SSLCertVerificationError:
                pass
    finally:
        assert stop(proc) == 0


def test_tls_options_are_validated(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fileferry", "serve", str(tmp_path), "--port", "0", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )

    result = run("--tls-cert", str(tmp_path / "nope.pem"))
    assert result.returncode == 2 and "tls_key" in result.stderr
    result = run("--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(tmp_path / "k.pem"))
    assert result.returncode == 2 and "does not exist" in result.stderr
    result = run("--tls-required")
    assert result.returncode == 2 and "tls_required" in result.stderr
    assert "Traceback" not in result.stderr
