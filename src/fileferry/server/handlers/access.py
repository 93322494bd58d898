"""Login, logout, REIN, QUIT, ABOR and the end of the connection."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fileferry.protocol import events
from fileferry.protocol.replies import Reply

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
        # Slow down guessing; the same delay for unknown users and bad passwords.
        await asyncio.sleep(conn.app.config.login_failure_delay)
        conn.reply(Reply(530, "Login incorrect."), ev)
        return
    conn.storage = conn.app.storage_for(account)
    conn.account = account
    conn.log_event("login", anonymous=account.anonymous)
    text = "Anonymous access granted." if account.anonymous else "Login successful."
    conn.reply(Reply(230, text), ev)


async def reinitialize(conn: ControlConnection, ev: events.Reinitialize) -> None:
    conn.data.close()
    conn.account = None
    conn.storage = None
    conn.reply(Reply(220, "Service ready for new user."), ev)


async def quit_(conn: ControlConnection, ev: events.Quit) -> None:
    task = conn.transfer_task
    if task is not None and not task.done():
        # RFC 959: QUIT during a transfer closes after the transfer's reply.
        await asyncio.wait({task})
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
    events.Reinitialize: reinitialize,
    events.Quit: quit_,
    events.ConnectionClosed: connection_closed,
    events.Abort: abort,
}
