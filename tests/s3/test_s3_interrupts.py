"""Transfers cut short on S3: what the store sees, not only what the client is told.

A download stopped by ABOR or a reset must stop its GET (not drain the
object in the background); an upload stopped by a data timeout, or one whose
FTPS data connection ends without close_notify, must leave neither an
object nor a pending multipart upload. Each fact is read from the store (or
from a relay that sits between the server and the store and counts what
crossed it), never inferred from a delay.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import random
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
from s3kit import S3Served, ServeS3, wait_until
from seaweed import wait_released
from tcprelay import Leg, TcpRelay

#: Size of the object the download tests cut short: far above every buffer on the way.
BIG = 64 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Relay(TcpRelay):
    """A TCP relay in front of the store: counts bytes per connection and sees who closes."""

    def mark(self) -> None:
        """Count from now on (a pooled connection carries request after request)."""
        with self.lock:
            for leg in self.legs:
                leg.since = leg.down

    def body_legs(self) -> list[Leg]:
        """Connections that carried an object body since the mark (more than a HEAD would)."""
        with self.lock:
            return [leg for leg in self.legs if leg.down - leg.since > 1 << 20]


@pytest.fixture
def relay(seaweed: Any) -> Iterator[Relay]:
    r = Relay(seaweed.ports["s3"])
    try:
        yield r
    finally:
        r.close()
        # Every relayed connection to the store is closed with the relay.
        wait_released(seaweed.ports["s3"])


def _start_retr(f: ftplib.FTP, path: str) -> socket.socket:
    conn = f.transfercmd(f"RETR {path}")
    got = 0
    while got < 1 << 20:  # the download is under way: the GET is streaming
        chunk = conn.recv(65536)
        assert chunk, "download ended early"
        got += len(chunk)
    return conn


def _assert_get_stopped(relay: Relay) -> None:
    """The GET's connection was closed by the server, well before the object's end."""
    try:
        wait_until(
            lambda: relay.body_legs() and all(leg.closed_by_server for leg in relay.body_legs()),
            what="the server closed its GET connection to the store",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {relay.legs}") from None
    fetched = sum(leg.down - leg.since for leg in relay.body_legs())
    assert fetched < BIG // 2, f"{fetched} of {BIG} bytes fetched from the store"
    relay.mark()


def test_abort_and_reset_downloads_stop_the_get(serve_s3: ServeS3, relay: Relay) -> None:
    s = serve_s3("--write", env={"AWS_ENDPOINT_URL": relay.endpoint})
    data = random.Random(1).randbytes(BIG)
    with s.ftp() as f:
        f.storbinary("STOR /big.bin", io.BytesIO(data))
        relay.mark()

        # ABOR: the data connection stays open until both replies are in.
        conn = _start_retr(f, "/big.bin")
        f.sock.sendall(b"ABOR\r\n")
        replies = [f.getline()[:3] for _ in range(2)]
        conn.close()
        assert replies == ["426", "226"]
        _assert_get_stopped(relay)

        # A reset: RST instead of FIN on the data connection.
        conn = _start_retr(f, "/big.bin")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        conn.close()
        with pytest.raises(ftplib.error_temp, match=r"^4(26|51)"):
            f.getresp()
        _assert_get_stopped(relay)

        # The server goes on serving: a whole download gives the right bytes.
        out = io.BytesIO()
        f.retrbinary("RETR /big.bin", out.write)
        assert sha(out.getvalue()) == sha(data)


def test_data_timeout_mid_upload_aborts_the_multipart_upload(serve_s3: ServeS3) -> None:
    s = serve_s3("--write", "--data-timeout", "1")
    with s.ftp() as f:
        f.voidcmd("TYPE I")
        conn = f.transfercmd("STOR /stalled.bin")
        for _ in range(12):  # two parts: the multipart upload has begun
            conn.sendall(random.Random(2).randbytes(1 << 20))
        wait_until(lambda: s.pending() != [], what="a multipart upload is pending")
        # Then nothing more, the connection held open: the data timeout ends it.
        with pytest.raises(ftplib.error_temp, match=r"^4(26|21|51)"):
            f.getresp()
        conn.close()
        assert f.nlst("/") == []
    wait_until(lambda: s.pending() == [], what="no pending multipart upload")
    assert s.object_keys() == []


class _ReusingFTPS(ftplib.FTP_TLS):
    """FTP_TLS resuming the control session on data connections (the server requires it)."""

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session
            )
        return conn, size


def _ftps(s: S3Served) -> ftplib.FTP_TLS:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server's certificate is a throwaway
    f = _ReusingFTPS(context=context, timeout=60)
    f.connect(s.host, s.port)
    f.login("anonymous", "")
    f.prot_p()
    f.voidcmd("TYPE I")
    return f


@pytest.mark.parametrize("size", [300_000, 12 << 20], ids=["single-put", "multipart"])
def test_ftps_upload_without_close_notify_is_not_committed(serve_s3: ServeS3, size: int) -> None:
    s = serve_s3("--write", "--tls-self-signed")
    data = random.Random(size).randbytes(size)
    with _ftps(s) as f:
        conn = f.transfercmd("STOR /cut.bin")
        conn.sendall(data)
        if size > 5 << 20:
            wait_until(lambda: s.pending() != [], what="a multipart upload is pending")
        conn.close()  # an SSLSocket closed without unwrap(): a bare TCP FIN, no close_notify
        with pytest.raises(ftplib.error_temp, match=r"^426 .*close_notify"):
            f.getresp()
        wait_until(lambda: s.pending() == [], what="no pending multipart upload")
        assert s.object_keys() == []

        # The same bytes closed with close_notify are committed whole.
        f.storbinary("STOR /whole.bin", io.BytesIO(data))
        out = io.BytesIO()
        f.retrbinary("RETR /whole.bin", out.write)
        assert sha(out.getvalue()) == sha(data)
    assert s.object_keys() == ["whole.bin"]
    assert s.pending() == []
