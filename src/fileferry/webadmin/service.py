"""The admin app and its listener: Starlette served by uvicorn in the server's loop.

uvicorn's ``Server`` runs as a task of the FTP server's own event loop, on a
socket bound here, so the pages read the live sessions with no locking and
no second process. Its signal handling is switched off: SIGTERM and SIGHUP
belong to ``fileferry serve``, which stops the admin when it stops.

Every response carries a strict Content-Security-Policy (scripts and styles
from this origin only, no inline code, no framing), ``nosniff``, no referrer
and ``no-store``. While no administrator exists the listener answers every
request with a 503 that says how to add one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fileferry.webadmin.actions import Actions
from fileferry.webadmin.api import API
from fileferry.webadmin.auth import Gatekeeper
from fileferry.webadmin.pages import Pages
from fileferry.webadmin.stats import Stats

if TYPE_CHECKING:
    from fileferry.webadmin.model import Host

log = logging.getLogger("fileferry.admin")

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


def _no_admin_page(db: str) -> bytes:
    return (
        "<!doctype html><title>fileferry admin</title><h1>No administrator yet</h1>"
        "<p>This admin listener refuses every request until an administrator exists."
        " Add one on the server's shell, then reload:</p>"
        f"<pre>fileferry admin add NAME --db {_escape(db)}</pre>"
    ).encode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Guard:
    """ASGI middleware: security headers on everything; 503 while no administrator exists."""

    def __init__(self, app: ASGIApp, gate: Gatekeeper, db: str) -> None:
        self.app = app
        self.gate = gate
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                extra = [h for h in _HEADERS if h[0] not in names]
                message["headers"] = [*message.get("headers", []), *extra]
                if self.gate.secure:
                    message["headers"].append((b"strict-transport-security", b"max-age=31536000"))
            await send(message)

        if not await self.gate.has_admins():
            api = scope["path"].startswith("/api/")
            body = (
                b'{"error": "no administrator exists yet: add one with'
                b" fileferry admin add NAME --db " + self.db.encode() + b'"}'
                if api
                else _no_admin_page(self.db)
            )
            kind = b"application/json" if api else b"text/html; charset=utf-8"
            await with_headers(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", kind),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, with_headers)


def build_app(host: Host, stats: Stats, *, secure: bool) -> tuple[ASGIApp, Gatekeeper]:
    gate = Gatekeeper(host, stats, secure=secure)
    actions = Actions(host)
    api = API(host, gate, actions, stats)
    pages = Pages(host, gate, actions, stats)
    app = Starlette(
        routes=[
            *api.routes(),
            *pages.routes(),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
    )
    db = host.config.user_store.db or ""
    return Guard(app, gate, db), gate


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the FTP server owns the signals


class AdminService:
    """One admin listener; ``start`` binds and serves, ``close`` stops."""

    def __init__(
        self,
        host: Host,
        stats: Stats,
        sock: socket.socket,
        tls: tuple[str, str] | None,
        release: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        #: Called once the listener stopped: closes what the admin was given (its store).
        self._release = release
        self.stats = stats
        self.sock = sock
        self.secure = tls is not None
        self.app, self.gate = build_app(host, stats, secure=self.secure)
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            proxy_headers=False,
            ssl_certfile=tls[0] if tls else None,
            ssl_keyfile=tls[1] if tls else None,
            ssl_ciphers="ECDHE+AESGCM:ECDHE+CHACHA20",
            timeout_graceful_shutdown=5,
            h11_max_incomplete_event_size=64 * 1024,
        )
        if tls:
            config.ssl_version = ssl.PROTOCOL_TLS_SERVER
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        name = self.sock.getsockname()
        return name[0], name[1]

    @property
    def url(self) -> str:
        host, port = self.address
        scheme = "https" if self.secure else "http"
        return f"{scheme}://[{host}]:{port}/" if ":" in host else f"{scheme}://{host}:{port}/"

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._server.serve([self.sock]))
        deadline = asyncio.get_running_loop().time() + 10
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the admin listener stopped at start")
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("the admin listener did not start in 10 s")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
            self._task = None
        if self._release is not None:
            release, self._release = self._release, None
            await release()
