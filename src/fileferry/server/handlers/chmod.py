"""SITE CHMOD: change a file's Unix permission bits (the ``M`` permission).

Only the nine ``rwx`` bits can be set: set-user-ID, set-group-ID and sticky
bits are for the operator, never for a remote client. The root of a user's
tree cannot be changed, so a client cannot lock the server out of it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from fileferry import paths
from fileferry.protocol import events
from fileferry.protocol.replies import Reply

if TYPE_CHECKING:
    from fileferry.server.control import ControlConnection

#: The permission letter for SITE CHMOD (pyftpdlib's).
CHMOD_PERMISSION = "M"
_MODE = re.compile(r"[0-7]{3,4}")


async def site_chmod(conn: ControlConnection, ev: events.SiteCommand) -> None:
    mode_text, _, name = ev.arg.partition(" ")
    if not _MODE.fullmatch(mode_text) or not name.strip():
        conn.reply(Reply(501, "Syntax: SITE CHMOD <octal mode> <path>"), ev)
        return
    mode = int(mode_text, 8)
    if mode & ~0o777:
        conn.reply(Reply(501, "Only the rwx bits (0-777) can be set."), ev)
        return
    try:
        path = paths.resolve(ev.cwd, name)
    except paths.PathError as exc:
        conn.reply(Reply(550, str(exc)), ev)
        return
    if path == "/":
        conn.reply(Reply(550, "Cannot change the root folder."), ev)
        return
    await conn.require(CHMOD_PERMISSION, path).set_mode(path, mode)
    conn.log_event("chmod", path=path, mode=f"{mode:o}")
    conn.reply(Reply(200, "SITE CHMOD command successful."), ev)
