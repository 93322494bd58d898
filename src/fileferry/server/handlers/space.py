"""AVBL and SITE QUOTA: how much room the user has left.

AVBL follows draft-peterson-streamlined-ftp-command-extensions: ``213`` and
the number of bytes that may still be stored in a directory, or ``550``
when that cannot be said. fileferry can say it exactly when the account has
a byte quota (its remaining room, uploads in flight included); without one,
free space on some host disk would be a guess about a storage the protocol
does not know, so the answer is an honest 550.

SITE QUOTA shows the same figures for people, bytes and files. It never
walks a tree on demand: accounts without a quota are told so, which keeps
a client from making the server count a large folder again and again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fileferry.errors import NotADirectory
from fileferry.protocol import events
from fileferry.protocol.commands import permission
from fileferry.protocol.replies import Reply

if TYPE_CHECKING:
    from fileferry.server.context import Handler, SessionContext

_AVBL, _STOR = permission("AVBL"), permission("STOR")


async def available_space(ctx: SessionContext, ev: events.AvailableSpace) -> Reply:
    info = await ctx.require(_AVBL, ev.path).stat(ev.path)
    if not info.is_dir:
        raise NotADirectory("AVBL needs a directory.")
    assert ctx.account is not None
    if not ctx.account.permits(_STOR, ev.path):
        return Reply(550, "You may not store files there.")
    tracker = ctx.lease.quota if ctx.lease is not None else None
    available = tracker.available_bytes() if tracker is not None else None
    if available is None:
        return Reply(550, "Available space unknown: no byte quota.")
    if tracker is not None and tracker.available_files() == 0:
        available = 0  # no new file fits, whatever the bytes say
    return Reply(213, str(available))


def _line(kind: str, used: int, limit: int, available: int | None) -> str:
    if not limit:
        return f"{kind}: {used} used (no limit)"
    return f"{kind}: {used} used of {limit} ({available} available)"


async def site_quota(ctx: SessionContext, ev: events.SiteCommand) -> Reply:
    account = ctx.account
    tracker = ctx.lease.quota if ctx.lease is not None else None
    if account is None or tracker is None:
        return Reply(200, "No quota: uploads are limited only by the server's disk.")
    lines = (
        _line("Bytes", tracker.usage.bytes, tracker.quota_bytes, tracker.available_bytes()),
        _line("Files", tracker.usage.files, tracker.quota_files, tracker.available_files()),
    )
    return Reply(200, f"Quota of {account.name}:", lines, "End of quota.")


HANDLERS: dict[type[events.Event], Handler] = {events.AvailableSpace: available_space}
