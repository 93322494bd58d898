"""The login policy after the password check, and logout.

:func:`admit` is the whole policy once the user store said the password is
right: disabled, expired, wrong network, too many sessions, home folder
missing. Each is a 530 with a message that says which, sent only to someone
who knew the password; the caller applies the same failure delay to all of
them. It works on the session context, so it knows nothing of the shell.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from fileferry.storage.quota import QuotaStorage

if TYPE_CHECKING:
    from fileferry.server.context import SessionContext
    from fileferry.users.base import Account

log = logging.getLogger("fileferry.accounts")


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
