"""pytest plugin: a real fileferry server for a test, as easily as ``tmp_path``.

Registered through the ``pytest11`` entry point, so installing fileferry is
enough::

    def test_upload(ftp_server):
        with ftp_server.connect() as ftp:          # logged in as ftp_server.user
            ftp.storbinary("STOR a.txt", io.BytesIO(b"hi"))
        assert (ftp_server.root / "a.txt").read_bytes() == b"hi"

``ftp_server`` is an in-process server on a free loopback port (its own
thread and event loop), serving ``tmp_path`` (or memory), with one account
that may write and anonymous read access. ``ftps_server`` is the same with
FTPS: a throwaway CA whose file is ``ca_file``, and clients from
``connect()`` verify against it and resume the TLS session on data
connections, as the server requires by default.

Configure either with the ``fileferry`` marker or with indirect parameters
(the parameter wins)::

    @pytest.mark.fileferry(storage="memory", anonymous=False,
                           users={"alice": {"password": "pw", "quota_bytes": "1M"}},
                           settings={"max_sessions": 10})
    def test_quota(ftp_server): ...

    @pytest.mark.parametrize("ftp_server", [{"anonymous_write": True}], indirect=True)
    def test_anonymous_upload(ftp_server): ...

Options: ``storage`` (``"tmp_path"`` or ``"memory"``), ``anonymous``,
``anonymous_write``, ``user``, ``password``, ``users`` (name -> password,
or name -> a ``[[user]]`` table: quotas, permissions, rates...),
``settings`` (any fileferry setting by its flat key, and ``hooks``),
``implicit`` (ftps_server: also listen for implicit FTPS). Unlike a
production server, a failed login is answered at once
(``login_failure_delay = 0``).

This module is imported by every pytest run where fileferry is installed:
it imports only pytest and the standard library at the top; the server is
loaded when a fixture is first used.
"""

from __future__ import annotations

import ftplib
import secrets
import socket
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from fileferry.config import ServerConfig
    from fileferry.server.thread import ServerThread
    from fileferry.storage.memory import MemoryStorage

_OPTIONS = frozenset(
    {"storage", "anonymous", "anonymous_write", "user", "password", "users", "settings", "implicit"}
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fileferry(**options): configure the ftp_server/ftps_server fixtures (storage, "
        "anonymous, anonymous_write, user, password, users, settings, implicit)",
    )


class SessionReusingFTP_TLS(ftplib.FTP_TLS):
    """ftplib's FTPS client, resuming the control connection's TLS session on data
    connections (stock ftplib does not; fileferry, like vsftpd, requires it)."""

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            conn = self.context.wrap_socket(
                conn,
                server_hostname=self.host,
                session=self.sock.session,  # type: ignore[attr-defined]
            )
        return conn, size


@dataclass
class LocalFTPServer:
    """A running server and what a test needs to reach it."""

    host: str
    port: int
    #: ``ftp://host:port`` (``ftps://`` is not a scheme ftplib needs; see ``tls``).
    url: str
    #: The served folder, or ``None`` with memory storage (see ``storage``).
    root: Path | None
    #: An account that may read and write.
    user: str
    password: str
    #: The CA that signed the server's certificate (``ftps_server`` only).
    ca_file: Path | None = None
    #: Where implicit FTPS listens, with ``implicit=True``.
    implicit_port: int | None = None
    #: The shared in-memory tree with ``storage="memory"``.
    storage: MemoryStorage | None = None
    config: ServerConfig | None = None
    thread: ServerThread | None = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        return self.ca_file is not None

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the test CA (and checks the host name)."""
        if self.ca_file is None:
            raise ValueError("not an FTPS server: use the ftps_server fixture")
        return ssl.create_default_context(cafile=str(self.ca_file))

    def connect(
        self,
        user: str | None = None,
        password: str | None = None,
        *,
        anonymous: bool = False,
        timeout: float = 30,
    ) -> ftplib.FTP:
        """An ftplib client, logged in (as ``user``, or anonymously); under FTPS with
        a protected data channel."""
        client: ftplib.FTP
        if self.ca_file is not None:
            client = SessionReusingFTP_TLS(context=self.ssl_context(), timeout=timeout)
        else:
            client = ftplib.FTP(timeout=timeout)
        client.connect(self.host, self.port)
        try:
            if anonymous:
                client.login("anonymous", "test@")
            else:
                client.login(user or self.user, password or self.password)
            if isinstance(client, ftplib.FTP_TLS):
                client.prot_p()
        except BaseException:
            client.close()
            raise
        return client


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    marker = request.node.get_closest_marker("fileferry")
    if marker is not None:
        if marker.args:
            raise pytest.UsageError("@pytest.mark.fileferry takes keyword options only")
        options.update(marker.kwargs)
    param = getattr(request, "param", None)
    if param is not None:
        if not isinstance(param, Mapping):
            raise pytest.UsageError(f"{request.fixturename} parameters must be dicts of options")
        options.update(param)
    unknown = set(options) - _OPTIONS
    if unknown:
        known = ", ".join(sorted(_OPTIONS))
        raise pytest.UsageError(f"unknown fileferry option {sorted(unknown)[0]!r} (known: {known})")
    return options


def _users(options: Mapping[str, Any], user: str, password: str) -> list[dict[str, object]]:
    tables: list[dict[str, object]] = [{"name": user, "password": password}]
    extra = options.get("users") or {}
    if not isinstance(extra, Mapping):
        raise pytest.UsageError("fileferry option users: a dict of name -> password or table")
    for name, spec in extra.items():
        if isinstance(spec, str):
            tables.append({"name": name, "password": spec})
        elif isinstance(spec, Mapping):
            tables.append({"name": name, **spec})
        else:
            raise pytest.UsageError(f"fileferry option users[{name!r}]: a password or a dict")
    return tables


def _start(
    request: pytest.FixtureRequest, directory: Path, tls_dir: Path | None
) -> Iterator[LocalFTPServer]:
    from fileferry.config import build
    from fileferry.config.tables import users_from_toml
    from fileferry.server.testcerts import make_test_certificates
    from fileferry.server.thread import ServerThread

    options = _options(request)
    kind = options.get("storage", "tmp_path")
    if kind not in ("tmp_path", "memory"):
        raise pytest.UsageError("fileferry option storage: 'tmp_path' or 'memory'")
    user = str(options.get("user", "user"))
    password = str(options.get("password") or secrets.token_urlsafe(12))
    root = directory / "root"
    root.mkdir(parents=True, exist_ok=True)
    layer: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "root": str(root),
        "anonymous": bool(options.get("anonymous", True)),
        "write": bool(options.get("anonymous_write", False)),
        "users": users_from_toml(_users(options, user, password), "fileferry marker"),
        # A test that checks a 530 should not wait a second for it (settings may restore it).
        "login_failure_delay": 0,
    }
    certs = None
    if tls_dir is not None:
        certs = make_test_certificates(tls_dir)
        layer["tls_cert"], layer["tls_key"] = str(certs.cert), str(certs.key)
        if options.get("implicit"):
            layer["tls_implicit_port"] = 0
    settings = options.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise pytest.UsageError("fileferry option settings: a dict of setting -> value")
    layer.update(settings)
    config = build(layer)
    kwargs: dict[str, Any] = {}
    memory = None
    if kind == "memory":
        from fileferry.storage.memory import MemoryStorage

        memory = MemoryStorage()
        tree = memory
        kwargs["storage_for"] = lambda account: tree
    thread = ServerThread(config, **kwargs).start()
    try:
        host, port = thread.address
        implicit = thread.server.implicit_address if thread.server is not None else None
        yield LocalFTPServer(
            host=host,
            port=port,
            url=f"ftp://{host}:{port}",
            root=None if memory is not None else root,
            user=user,
            password=password,
            ca_file=certs.ca if certs is not None else None,
            implicit_port=implicit[1] if implicit is not None else None,
            storage=memory,
            config=config,
            thread=thread,
        )
    finally:
        thread.stop()


@pytest.fixture
def ftp_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalFTPServer]:
    """A fileferry server for this test: plain FTP on 127.0.0.1 (see the module doc)."""
    yield from _start(request, tmp_path / "ftp_server", None)


@pytest.fixture
def ftps_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalFTPServer]:
    """The same with FTPS (AUTH TLS; ``implicit=True`` adds implicit FTPS); trust ``ca_file``."""
    base = tmp_path / "ftps_server"
    yield from _start(request, base, base / "tls")
