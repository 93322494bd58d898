"""Event handlers: one small async function per event type, found by table lookup."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

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
    from fileferry.server.control import ControlConnection

Handler = Callable[["ControlConnection", Any], Awaitable[None]]

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
