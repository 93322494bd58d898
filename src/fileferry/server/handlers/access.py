"""Login, logout, REIN, QUIT, ABOR and the end of the connection."""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import TYPE_CHECKING

from fileferry.protocol import events
from fileferry.protocol.replies import Reply
from fileferry.server.accounts import admit, logout

if TYPE_CHECKING:
    from fileferry.server.control import ControlConnection


async def answer(conn: ControlConnection, ev: events.Answer) -> None:
    """The core answered by itself; only the bytes need to go out."""
    conn.reply(ev.reply)
    if ev.reply.code == 421:
        conn.closing = True


async def authenticate(conn: ControlConnection, ev: events.Authenticate) -> None:
    account = await conn.app.users.authenticate(ev.username, ev.password)
    if account is None:
        conn.log_event("login-failed", username=ev.username)
        banned = conn.app.defender.record_failure(conn.client_key)
        # Slow down guessing; the same delay for unknown users and bad passwords.
        await asyncio.sleep(conn.app.config.limits.bans.failure_delay)
        if banned:
            conn.log_event("banned", client=conn.client_key)
            conn.reply(Reply(421, "Too many failed logins from your address; closing."), ev)
            conn.closing = True
            return
        conn.reply(Reply(530, "Login incorrect."), ev)
        return
    refusal = await admit(conn, account)
    if refusal is not None:
        # The password was right: say why, after the same delay as any failure.
        conn.log_event("login-refused", username=ev.username, reason=refusal)
        await asyncio.sleep(conn.app.config.limits.bans.failure_delay)
        conn.reply(Reply(530, refusal), ev)
        return
    conn.log_event("login", anonymous=account.anonymous)
    text = "Anonymous access granted." if account.anonymous else "Login successful."
    conn.reply(Reply(230, text), ev)


async def start_tls(conn: ControlConnection, ev: events.StartTLS) -> None:
    tls = conn.app.tls
    if tls is None:  # pragma: no cover - the core refuses AUTH without TLS set up
        conn.reply(Reply(502, "TLS is not configured."), ev)
        return
    conn.reply(Reply(234, f"AUTH {ev.mechanism} successful."), ev)
    try:
        await conn.writer.drain()
    except (OSError, ConnectionError):
        conn.closing = True
        return
    if _buffered(conn.reader):
        # Clear text sent behind AUTH (command injection): never let it pass as protected.
        conn.log_event("tls-refused", reason="clear text after AUTH")
        conn.closing = True
        return
    context = tls.context
    try:
        await conn.writer.start_tls(
            context, ssl_handshake_timeout=conn.app.config.data.accept_timeout
        )
    except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
        conn.log_event("tls-failed", reason=type(exc).__name__)
        conn.closing = True
        return
    conn.tls_context = context
    conn.log_event("tls", version=conn.writer.get_extra_info("ssl_object").version())


def _buffered(reader: asyncio.StreamReader) -> bool:
    """Whether bytes already wait in the stream (asyncio keeps no public way to ask)."""
    return bool(getattr(reader, "_buffer", b""))


async def reinitialize(conn: ControlConnection, ev: events.Reinitialize) -> None:
    conn.data.close()
    logout(conn)
    conn.login_deadline = time.monotonic() + conn.app.config.limits.sessions.login_timeout
    conn.reply(Reply(220, "Service ready for new user."), ev)


async def quit_(conn: ControlConnection, ev: events.Quit) -> None:
    task = conn.transfer_task
    if task is not None and not task.done():
        # RFC 959: QUIT during a transfer closes after the transfer's reply.
        await asyncio.wait({task})
    if conn.lease is not None:
        conn.lease.release()  # before the 221, so a client may log in again at once
    conn.reply(Reply(221, "Goodbye."), ev)
    conn.closing = True


async def connection_closed(conn: ControlConnection, ev: events.ConnectionClosed) -> None:
    conn.closing = True


async def abort(conn: ControlConnection, ev: events.Abort) -> None:
    task = conn.transfer_task
    if task is not None and not task.done():
        await conn.stop_transfer()  # the transfer answers 426 itself
        conn.reply(Reply(226, "ABOR successful; transfer aborted."), ev)
        return
    had_channel = conn.data.is_set_up or conn.data.connection is not None
    conn.data.close()
    if had_channel:
        conn.reply(Reply(225, "ABOR successful; data channel closed."), ev)
    else:
        conn.reply(Reply(226, "ABOR successful; no transfer to abort."), ev)


HANDLERS = {
    events.Answer: answer,
    events.Authenticate: authenticate,
    events.StartTLS: start_tls,
    events.Reinitialize: reinitialize,
    events.Quit: quit_,
    events.ConnectionClosed: connection_closed,
    events.Abort: abort,
}
