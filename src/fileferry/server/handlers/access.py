"""Login, logout, REIN, QUIT, ABOR and the end of the connection."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from fileferry.observability import events as seen
from fileferry.protocol import events
from fileferry.protocol.replies import Reply
from fileferry.server.login import BANNED, admit, ban_refusal, check_turn, logout

if TYPE_CHECKING:
    from fileferry.server.context import Handler, SessionContext


async def authenticate(ctx: SessionContext, ev: events.Authenticate) -> Reply:
    services = ctx.services
    client, username = ctx.client_key, ev.username
    busy = await check_turn(ctx, username)
    if busy is not None:
        return busy
    try:
        # Asked again with the turn in hand: guesses that waited behind the
        # ones that earned the ban are never checked.
        banned = ban_refusal(ctx)
        if banned is not None:
            return banned
        account = await services.users.authenticate(username, ev.password)
        if account is None:
            # Counted the moment it is decided, before the delay, so the
            # checks waiting for a turn already see the ban.
            now_banned = services.defender.record_failure(client)
            ctx.emit(seen.LoginFailed(ctx.origin, username))
            # Slow down guessing; the same delay for unknown users and bad
            # passwords. The turn is held through it, which paces the guesses
            # at one user name from many addresses.
            await asyncio.sleep(ctx.config.limits.bans.failure_delay)
            if now_banned:
                ctx.emit(seen.Banned(ctx.origin, client))
                ctx.closing = True
                return Reply(421, BANNED)
            return Reply(530, "Login incorrect.")
    finally:
        services.login_checks.release(client, username)
    refusal = await admit(ctx, account)
    if refusal is not None:
        # The password was right: say why, after the same delay as any failure.
        ctx.emit(seen.LoginRefused(ctx.origin, ev.username, refusal))
        await asyncio.sleep(ctx.config.limits.bans.failure_delay)
        return Reply(530, refusal)
    ctx.emit(seen.LoginSucceeded(ctx.origin, account.anonymous))
    text = "Anonymous access granted." if account.anonymous else "Login successful."
    return Reply(230, text)


async def start_tls(ctx: SessionContext, ev: events.StartTLS) -> None:
    if ctx.services.tls is None:  # pragma: no cover - the core refuses AUTH without TLS set up
        ctx.reply(Reply(502, "TLS is not configured."), ev)
        return None
    # The 234 must be out before the handshake starts: the shell sends it and
    # then owns the transport for the upgrade.
    ctx.reply(Reply(234, f"AUTH {ev.mechanism} successful."), ev)
    if not await ctx.start_tls():
        ctx.closing = True
    return None


async def reinitialize(ctx: SessionContext, ev: events.Reinitialize) -> Reply:
    ctx.data.close()
    logout(ctx)
    ctx.login_deadline = time.monotonic() + ctx.config.limits.sessions.login_timeout
    return Reply(220, "Service ready for new user.")


async def quit_(ctx: SessionContext, ev: events.Quit) -> Reply:
    # RFC 959: QUIT during a transfer closes after the transfer's reply.
    await ctx.wait_transfer()
    if ctx.lease is not None:
        ctx.lease.release()  # before the 221, so a client may log in again at once
    ctx.closing = True
    return Reply(221, "Goodbye.")


async def connection_closed(ctx: SessionContext, ev: events.ConnectionClosed) -> None:
    ctx.closing = True


async def abort(ctx: SessionContext, ev: events.Abort) -> Reply:
    if ctx.transfer_running:
        await ctx.stop_transfer()  # the transfer answers 426 itself
        return Reply(226, "ABOR successful; transfer aborted.")
    had_channel = ctx.data.is_set_up or ctx.data.connection is not None
    ctx.data.close()
    if had_channel:
        return Reply(225, "ABOR successful; data channel closed.")
    return Reply(226, "ABOR successful; no transfer to abort.")


HANDLERS: dict[type[events.Event], Handler] = {
    events.Authenticate: authenticate,
    events.StartTLS: start_tls,
    events.Reinitialize: reinitialize,
    events.Quit: quit_,
    events.ConnectionClosed: connection_closed,
    events.Abort: abort,
}
