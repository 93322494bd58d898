"""Event handlers: one small async function per event type, found by table lookup.

Each takes the session context (``server.context.SessionContext``) and the
event, and returns what to answer: a ``Reply``, a transfer ``Job`` for the
shell to run, or ``None``. ``Answer`` events (the core answered by itself)
never reach a handler: the shell sends their reply directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fileferry.server.handlers import (
    access,
    data,
    files,
    hashing,
    listings,
    site,
    space,
    transfers,
)

if TYPE_CHECKING:
    from fileferry.protocol.events import Event
    from fileferry.server.context import Handler

HANDLERS: dict[type[Event], Handler] = {
    **access.HANDLERS,
    **data.HANDLERS,
    **files.HANDLERS,
    **transfers.HANDLERS,
    **listings.HANDLERS,
    **site.HANDLERS,
    **hashing.HANDLERS,
    **space.HANDLERS,
}
