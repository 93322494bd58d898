"""--proxy-protocol: the client named by a trusted balancer's header is the client.

The tests play the balancer: they connect from 127.0.0.1 (the trusted
proxy) and write a PROXY header naming a client on another loopback address
(127.0.0.7...), which is real, so active-mode connections to it work.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest

from fileferry import config
from fileferry.config.tables import users_from_toml
from fileferry.protocol.proxyheader import V2_SIGNATURE, encode_v2
from fileferry.server.thread import ServerThread

CLIENT = "127.0.0.7"
OTHER = "127.0.0.8"


def v1(client: str, port: int = 40000) -> bytes:
    return f"PROXY TCP4 {client} 127.0.0.1 {port} 21\r\n".encode()


def v2(client: str, port: int = 40000) -> bytes:
    return encode_v2((client, port), ("::1" if ":" in client else "127.0.0.1", 21))


class ProxiedFTP(ftplib.FTP):
    """ftplib as seen through a balancer: a PROXY header first on every connection."""

    def __init__(self, header: Callable[[], bytes], data_header: bool = True) -> None:
        super().__init__(timeout=20)
        self.encoding = "utf-8"
        self._header = header
        self._data_header = data_header

    def connect(self, host: str = "", port: int = 0, *args: Any, **kwargs: Any) -> str:
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=self.timeout)
        self.sock.sendall(self._header())
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int]:
        if not self.passiveserver:
            return super().ntransfercmd(cmd, rest)
        host, port = self.makepasv()
        conn = socket.create_connection((host, port), timeout=self.timeout)
        try:
            if self._data_header:
                conn.sendall(self._header())
            if rest is not None:
                self.sendcmd(f"REST {rest}")
            resp = self.sendcmd(cmd)
            if resp[0] == "2":
                resp = self.getresp()
            if resp[0] != "1":
                raise ftplib.error_reply(resp)
        except BaseException:
            conn.close()
            raise
        return conn, 0


@pytest.fixture
def proxied(make_server: Callable[..., ServerThread]) -> Callable[..., ServerThread]:
    def make(**values: Any) -> ServerThread:
        values.setdefault("proxy_protocol", True)
        values.setdefault("trusted_proxy", ("127.0.0.1/32",))
        values.setdefault("write", True)
        values.setdefault("users", ("alice:secret",))
        return make_server(**values)

    return make


def _raw(server: ServerThread, payload: bytes) -> bytes:
    """Connect, send ``payload``, and return all the server says before it closes."""
    with socket.create_connection(server.address, timeout=20) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server refused first: its close can beat our send or shutdown
            pass
        got = b""
        try:
            while chunk := sock.recv(4096):
                got += chunk
        except ConnectionResetError:  # closed with our bytes unread: the same refusal
            pass
        return got


@pytest.mark.parametrize("header", [v1, v2], ids=["v1", "v2"])
def test_the_header_names_the_client_for_transfers_and_logs(
    proxied: Callable[..., ServerThread],
    header: Callable[[str], bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    server = proxied()
    data = bytes(range(256)) * 4000
    f = ProxiedFTP(lambda: header(CLIENT))
    assert f.connect(*server.address).startswith("220")
    f.login("alice", "secret")
    f.storbinary("STOR up.bin", io.BytesIO(data))
    got = io.BytesIO()
    f.retrbinary("RETR up.bin", got.write)
    assert hashlib.sha256(got.getvalue()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert "up.bin" in f.nlst()
    f.quit()
    sessions = [r.getMessage() for r in caplog.records if r.name.startswith("fileferry.session")]
    assert any(f"peer={CLIENT} user=alice" in line for line in sessions), sessions
    assert not any("peer=127.0.0.1" in line for line in sessions)


def test_a_client_on_the_balancers_own_address_gets_its_bytes_unmixed_with_headers(
    proxied: Callable[..., ServerThread], root: Any
) -> None:
    server = proxied()
    data = b"0123456789" * 10000
    f = ProxiedFTP(lambda: v2("127.0.0.1"))  # the header names the balancer's own address
    f.connect(*server.address)
    f.login("alice", "secret")
    f.storbinary("STOR same.bin", io.BytesIO(data))
    f.quit()
    assert (
        hashlib.sha256((root / "same.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    )


def test_active_mode_goes_to_the_named_client_and_only_there(
    proxied: Callable[..., ServerThread],
) -> None:
    server = proxied()
    f = ProxiedFTP(lambda: v2(CLIENT))
    f.connect(*server.address)
    f.login("alice", "secret")
    # PORT to the balancer's address (the socket's real peer) is a bounce now.
    with pytest.raises(ftplib.error_perm, match="501"):
        f.sendcmd("PORT 127,0,0,1,156,64")
    with socket.create_server((CLIENT, 0)) as listener:
        port = listener.getsockname()[1]
        f.sendcmd(f"PORT 127,0,0,7,{port >> 8},{port & 0xFF}")
        f.sendcmd("TYPE I")
        f.putcmd("LIST")
        listener.settimeout(10)
        conn, _ = listener.accept()
        with conn:
            while conn.recv(4096):
                pass
    assert f.getresp().startswith("150")
    assert f.getresp().startswith("226")
    f.quit()


def test_passive_data_from_the_balancer_needs_a_header_naming_the_client(
    proxied: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    server = proxied(accept_timeout=1.5)
    # No header on the data connection: unproven, dropped, and the wait runs out.
    f = ProxiedFTP(lambda: v2(CLIENT), data_header=False)
    f.connect(*server.address)
    f.login("alice", "secret")
    with pytest.raises(ftplib.error_temp, match="425"):
        f.nlst()
    f.quit()
    # A header naming someone else: dropped too.
    names = iter([v2(CLIENT), v2(OTHER)])
    f = ProxiedFTP(lambda: next(names))
    f.connect(*server.address)
    f.login("alice", "secret")
    with pytest.raises(ftplib.error_temp, match="425"):
        f.nlst()
    f.quit()
    messages = caplog.text
    assert "through proxy 127.0.0.1 for no client" in messages
    assert f"through proxy 127.0.0.1 for {OTHER} (control peer is {CLIENT})" in messages


def test_connections_from_an_untrusted_address_are_refused_unheard(
    proxied: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    server = proxied(trusted_proxy=("192.0.2.0/24",))
    assert _raw(server, v2(CLIENT) + b"USER alice\r\n") == b""
    assert "refused 127.0.0.1: not a trusted proxy" in caplog.text


@pytest.mark.parametrize(
    "payload",
    [
        b"USER alice\r\n",  # no header at all
        b"PROXY TCP4 127.0.0.7 nonsense\r\n",
        b"PROXY TCP4 " + b"9" * 200 + b"\r\n",  # v1 over 107 bytes
        V2_SIGNATURE + bytes([0x21, 0x11]) + (60000).to_bytes(2, "big") + bytes(2000),  # cap
        V2_SIGNATURE + bytes([0x21, 0x11, 0, 14]) + bytes(12) + b"\x01\x00",  # cut TLV
    ],
    ids=["none", "malformed", "long-v1", "oversized-v2", "bad-tlv"],
)
def test_bad_headers_are_refused_and_the_server_keeps_serving(
    proxied: Callable[..., ServerThread], payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    server = proxied()
    assert _raw(server, payload) == b""
    assert "bad PROXY header" in caplog.text
    f = ProxiedFTP(lambda: v2(CLIENT))
    assert f.connect(*server.address).startswith("220")
    f.quit()


def test_a_slow_header_is_cut_off_at_the_timeout(
    proxied: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    server = proxied(proxy_header_timeout=0.5)
    with socket.create_connection(server.address, timeout=20) as sock:
        sock.sendall(v2(CLIENT)[:10])
        start = time.monotonic()
        assert sock.recv(4096) == b""  # closed, no 220
        waited = time.monotonic() - start
    assert 0.3 < waited < 10
    assert "no complete PROXY header in time" in caplog.text


def test_local_header_is_the_balancer_itself(
    proxied: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    server = proxied()
    f = ProxiedFTP(lambda: encode_v2(None))
    assert f.connect(*server.address).startswith("220")
    f.login("alice", "secret")
    f.quit()
    assert "peer=127.0.0.1 user=alice" in caplog.text


def test_bans_and_address_caps_count_the_named_client(
    proxied: Callable[..., ServerThread],
) -> None:
    server = proxied(ban_threshold=2, max_sessions_per_ip=2)
    for _ in range(2):
        f = ProxiedFTP(lambda: v2(CLIENT))
        f.connect(*server.address)
        with pytest.raises((ftplib.error_perm, ftplib.error_temp), match=r"530|421"):
            f.login("alice", "wrong")
        f.close()
    banned = _raw(server, v2(CLIENT))
    assert banned.startswith(b"421") and b"failed logins" in banned
    # Another client behind the same balancer is not touched by that ban...
    held = [ProxiedFTP(lambda: v2(OTHER)) for _ in range(2)]
    for f in held:
        assert f.connect(*server.address).startswith("220")
    # ...but has its own per-address cap.
    assert _raw(server, v2(OTHER)).startswith(b"421")
    for f in held:
        f.close()


def test_allow_network_judges_the_named_client(
    make_server: Callable[..., ServerThread], root: Any
) -> None:
    users = users_from_toml(
        [{"name": "bob", "password": "pw", "allowed_networks": [f"{CLIENT}/32"]}], "test"
    )
    values = {
        "root": str(root), "port": 0, "login_failure_delay": 0, "proxy_protocol": True,
        "trusted_proxy": ("127.0.0.1/32",), "users": users,
    }  # fmt: skip
    server = ServerThread(config.build(values)).start()
    try:
        f = ProxiedFTP(lambda: v2(CLIENT))
        f.connect(*server.address)
        assert f.login("bob", "pw").startswith("230")
        f.quit()
        f = ProxiedFTP(lambda: v2(OTHER))
        f.connect(*server.address)
        with pytest.raises(ftplib.error_perm, match="530"):
            f.login("bob", "pw")
        f.close()
    finally:
        server.stop()


def test_implicit_ftps_reads_the_header_before_the_tls_hello(
    proxied: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    server = proxied(tls_self_signed=True, tls_implicit_port=0)
    address = server.call(lambda s: _implicit(s))[0]
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(address, timeout=20) as raw:
        raw.sendall(v2(CLIENT))
        with context.wrap_socket(raw) as tls:
            assert tls.recv(4096).startswith(b"220")
            tls.sendall(b"USER alice\r\nPASS secret\r\n")
            got = b""
            while b"230" not in got:
                got += tls.recv(4096)
            tls.sendall(b"QUIT\r\n")
    assert _raw_implicit_refused(address)
    assert f"peer={CLIENT} user=alice" in caplog.text


async def _implicit(server: Any) -> tuple[str, int]:
    address: tuple[str, int] = server.implicit_address
    return address


def _raw_implicit_refused(address: tuple[str, int]) -> bool:
    """A TLS hello with no header in front is not a header: closed at once."""
    with socket.create_connection(address, timeout=20) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x05hello")
        return raw.recv(4096) == b""


def test_proxy_settings_are_checked() -> None:
    from fileferry.config import validate
    from fileferry.errors import ConfigError

    with pytest.raises(ConfigError, match="needs trusted_proxy"):
        validate(config.build({"proxy_protocol": True}))
    with pytest.raises(ConfigError, match="only with proxy_protocol"):
        validate(config.build({"trusted_proxy": "10.0.0.0/8"}))
    with pytest.raises(ConfigError, match="not an address"):
        config.build({"trusted_proxy": "10.0.0.0/33"})
    cfg = config.build({"proxy_protocol": True, "trusted_proxy": "10.0.0.1, 2001:db8::/32"})
    assert cfg.proxy.trusted == ("10.0.0.1/32", "2001:db8::/32")


def test_an_ipv6_client_named_over_ipv4_counts_by_its_64(
    proxied: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    server = proxied(max_sessions_per_ip=1)
    first = ProxiedFTP(lambda: v2("2001:db8:1:2::7"))
    assert first.connect(*server.address).startswith("220")
    first.login("alice", "secret")
    # Another address of the same /64 is the same client for the caps...
    assert _raw(server, v2("2001:db8:1:2::8")).startswith(b"421")
    # ...one of another /64 is not.
    other = ProxiedFTP(lambda: v2("2001:db8:1:3::7"))
    assert other.connect(*server.address).startswith("220")
    other.close()
    first.quit()
    assert "peer=2001:db8:1:2::7 user=alice" in caplog.text
