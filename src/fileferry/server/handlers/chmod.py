"""SITE CHMOD: change a file's Unix permission bits (the ``M`` permission).

Only the nine ``rwx`` bits can be set: set-user-ID, set-group-ID and sticky
bits are for the operator, never for a remote client. The root of a user's
tree cannot be changed, so a client cannot lock the server out of it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from fileferry import paths
from fileferry.observability import events as seen
from fileferry.protocol import events
from fileferry.protocol.commands import permission
from fileferry.protocol.replies import Reply

if TYPE_CHECKING:
    from fileferry.server.context import SessionContext

#: The permission letter for SITE CHMOD (pyftpdlib's ``M``), from the command table.
CHMOD_PERMISSION = permission("CHMOD")
_MODE = re.compile(r"[0-7]{3,4}")


async def site_chmod(ctx: SessionContext, ev: events.SiteCommand) -> Reply:
    mode_text, _, name = ev.arg.partition(" ")
    if not _MODE.fullmatch(mode_text) or not name.strip():
        return Reply(501, "Syntax: SITE CHMOD <octal mode> <path>")
    mode = int(mode_text, 8)
    if mode & ~0o777:
        return Reply(501, "Only the rwx bits (0-777) can be set.")
    try:
        path = paths.resolve(ev.cwd, name)
    except paths.PathError as exc:
        return Reply(550, str(exc))
    if path == "/":
        return Reply(550, "Cannot change the root folder.")
    await ctx.require(CHMOD_PERMISSION, path).set_mode(path, mode)
    ctx.emit(seen.ModeChanged(ctx.origin, path, mode))
    return Reply(200, "SITE CHMOD command successful.")
