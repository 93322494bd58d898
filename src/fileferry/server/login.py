"""The login policy around the password check, and logout.

:func:`ban_refusal` is asked before anything a client does before logging
in, so an address banned while its connection was open (by guesses on its
other connections) is cut off at its next command, not only at its next
connection. :func:`check_turn` waits for the right to check a password
(the caps of :mod:`fileferry.limits.logins`), bounded by the login deadline.

:func:`admit` is the whole policy once the user store said the password is
right: disabled, expired, wrong network, too many sessions, home folder
missing. Each is a 530 with a message that says which, sent only to someone
who knew the password; the caller applies the same failure delay to all of
them. It works on the session context, so it knows nothing of the shell.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from fileferry.protocol.replies import Reply
from fileferry.storage.quota import QuotaStorage

if TYPE_CHECKING:
    from fileferry.server.context import SessionContext
    from fileferry.users.base import Account

log = logging.getLogger("fileferry.accounts")


BANNED = "Too many failed logins from your address; closing."
BUSY = "Too many logins in progress from your address or for this user; try again later."


def ban_refusal(ctx: SessionContext) -> Reply | None:
    """The 421 for a client whose address is banned, or None; it closes the session."""
    left = ctx.services.defender.banned_for(ctx.client_key)
    if not left:
        return None
    log.info("session=%d refused %s: banned for %d s more", ctx.id, ctx.client_key, int(left) + 1)
    ctx.closing = True
    return Reply(421, BANNED)


async def check_turn(ctx: SessionContext, username: str) -> Reply | None:
    """Wait for the right to check ``username``'s password; a 421 if it did not come.

    The wait ends with the session's login deadline (a client that cannot
    log in in time would be cut off anyway). Once it returns None, the
    caller owns one slot of ``services.login_checks`` and must release it.
    A free turn is taken without a wait: no timeout armed and cancelled
    around a wait that does not happen.
    """
    checks = ctx.services.login_checks
    if checks.try_acquire(ctx.client_key, username):
        return None
    left = ctx.login_deadline - time.monotonic()
    try:
        async with asyncio.timeout(max(0.0, left)):
            await checks.acquire(ctx.client_key, username)
    except TimeoutError:
        log.info("session=%d no turn to check a password for %s", ctx.id, ctx.client_key)
        ctx.closing = True
        return Reply(421, BUSY)
    return None


async def admit(ctx: SessionContext, account: Account) -> str | None:
    """Log ``account`` in on ``ctx``, or say why not (the text of a 530)."""
    refusal = account.refusal(ctx.peer_host, time.time())
    if refusal is not None:
        return refusal
    services = ctx.services
    lease = services.accounts.acquire(account)
    if lease is None:
        return "Too many sessions for this user; try again later."
    try:
        storage = services.storage_for(account)
        tracker = await services.accounts.quota_for(account, storage)
    except Exception:
        lease.release()
        # The operator needs the path and the reason; the client gets neither.
        log.exception("session=%d cannot open the home folder of %s", ctx.id, account.name)
        return "Home folder is not available."
    if tracker is not None:
        storage = QuotaStorage(storage, tracker)
        lease.quota = tracker
    ctx.account = account
    ctx.storage = storage
    ctx.lease = lease
    return None


def logout(ctx: SessionContext) -> None:
    """Drop the login (REIN, end of connection): the session slot is given back."""
    lease = ctx.lease
    if lease is not None:
        lease.release()
    ctx.lease = None
    ctx.account = None
    ctx.storage = None
