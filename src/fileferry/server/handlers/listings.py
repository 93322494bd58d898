"""LIST, NLST and MLSD: a directory listing sent over the data channel.

The listing is built before the 150, so a missing folder or a refused
permission is answered 550 without opening the data connection. It is built
by the storage's ``list_rendered``: the local backend scans, sorts, formats
and encodes in one worker-thread hop (``protocol.listing.ListingRenderer`` is
pure computation), so a folder of 10,000 entries costs the event loop one
``await`` and one ``sendall`` instead of 10,000 objects and lines. The S3
backend parses its listing pages and renders in worker threads the same
way (``storage/s3listing.py``). Other backends get the same bytes through
the generic fallback built on ``list``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fileferry.errors import NotADirectory
from fileferry.protocol import events, listing
from fileferry.protocol.commands import permission
from fileferry.server.handlers.transfers import Job

if TYPE_CHECKING:
    from fileferry.server.context import Handler, SessionContext
    from fileferry.server.datachannel import DataConnection


class SendListing(Job):
    """The data phase of a listing: one payload, already encoded."""

    def __init__(self, payload: bytes, count: int, truncated: bool = False) -> None:
        self.payload = payload
        self.count = count
        self.truncated = truncated
        self.opening = f"Here comes the directory listing ({count} entries)."

    async def run(self, dc: DataConnection) -> None:
        await dc.sendall(self.payload)

    async def finish(self) -> str:
        if self.truncated:
            # Say so: a client must not take a capped listing for the whole folder.
            return f"Transfer complete; listing truncated at {self.count} entries."
        return "Transfer complete."

    async def discard(self) -> None:
        self.payload = b""


#: LIST, NLST and MLSD each have their own letter in the command table.
_LETTERS = {fmt: permission(fmt.value) for fmt in events.ListFormat}


async def list_directory(ctx: SessionContext, ev: events.ListDirectory) -> Job:
    storage = ctx.require(_LETTERS[ev.format], ev.path)
    info = await storage.stat(ev.path)
    letters = ctx.account.permissions_at(ev.path) if ctx.account else ""
    cap = ctx.config.limits.sessions.max_list_entries
    render = listing.ListingRenderer(
        ev.format.value, time.time(), tuple(ev.facts), letters, cap if info.is_dir else None
    )
    if info.is_dir:
        # One more than the cap, so the renderer can tell a capped listing.
        rendered = await storage.list_rendered(ev.path, render, limit=cap + 1)
    elif ev.format is events.ListFormat.MLSD:
        raise NotADirectory("MLSD needs a directory.")
    else:
        rendered = render([info.row()])
    job = SendListing(rendered.payload, rendered.count, rendered.truncated)
    job.command = ev.format.value
    return job


HANDLERS: dict[type[events.Event], Handler] = {
    events.ListDirectory: list_directory,
}
