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
from fileferry.protocol.replies import Reply

if TYPE_CHECKING:
    from fileferry.server.control import ControlConnection


async def available_space(conn: ControlConnection, ev: events.AvailableSpace) -> None:
    info = await conn.require("l", ev.path).stat(ev.path)
    if not info.is_dir:
        raise NotADirectory("AVBL needs a directory.")
    assert conn.account is not None
    if not conn.account.permits("w", ev.path):
        conn.reply(Reply(550, "You may not store files there."), ev)
        return
    tracker = conn.lease.quota if conn.lease is not None else None
    available = tracker.available_bytes() if tracker is not None else None
    if available is None:
        conn.reply(Reply(550, "Available space unknown: no byte quota."), ev)
        return
    if tracker is not None and tracker.available_files() == 0:
        available = 0  # no new file fits, whatever the bytes say
    conn.reply(Reply(213, str(available)), ev)


def _line(kind: str, used: int, limit: int, available: int | None) -> str:
    if not limit:
        return f"{kind}: {used} used (no limit)"
    return f"{kind}: {used} used of {limit} ({available} available)"


async def site_quota(conn: ControlConnection, ev: events.SiteCommand) -> None:
    account = conn.account
    tracker = conn.lease.quota if conn.lease is not None else None
    if account is None or tracker is None:
        conn.reply(Reply(200, "No quota: uploads are limited only by the server's disk."), ev)
        return
    lines = (
        _line("Bytes", tracker.usage.bytes, tracker.quota_bytes, tracker.available_bytes()),
        _line("Files", tracker.usage.files, tracker.quota_files, tracker.available_files()),
    )
    conn.reply(Reply(200, f"Quota of {account.name}:", lines, "End of quota."), ev)


HANDLERS = {events.AvailableSpace: available_space}
