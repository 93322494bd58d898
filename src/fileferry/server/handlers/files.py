"""File and directory commands answered on the control connection."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fileferry.errors import IsADirectory, NotADirectory
from fileferry.observability import events as seen
from fileferry.protocol import events, listing
from fileferry.protocol.commands import permission
from fileferry.protocol.replies import Reply, quote_path
from fileferry.protocol.state import DataMode

if TYPE_CHECKING:
    from fileferry.server.context import Handler, SessionContext

# The permission letters, from the command table.
_CWD, _MKD, _RMD, _DELE = (permission(v) for v in ("CWD", "MKD", "RMD", "DELE"))
_RNFR, _RNTO, _SIZE, _MDTM = (permission(v) for v in ("RNFR", "RNTO", "SIZE", "MDTM"))
_MFMT, _MLST, _STAT = (permission(v) for v in ("MFMT", "MLST", "STAT"))


async def change_directory(ctx: SessionContext, ev: events.ChangeDirectory) -> Reply:
    info = await ctx.require(_CWD, ev.path).stat(ev.path)
    if not info.is_dir:
        raise NotADirectory
    return Reply(250, "Directory successfully changed.")


async def make_directory(ctx: SessionContext, ev: events.MakeDirectory) -> Reply:
    await ctx.require(_MKD, ev.path).mkdir(ev.path)
    ctx.emit(seen.DirectoryMade(ctx.origin, ev.path))
    return Reply(257, f"{quote_path(ev.path)} created.")


async def remove_directory(ctx: SessionContext, ev: events.RemoveDirectory) -> Reply:
    if ev.path == "/":
        return Reply(550, "Cannot remove the root directory.")
    await ctx.require(_RMD, ev.path).rmdir(ev.path)
    ctx.emit(seen.DirectoryRemoved(ctx.origin, ev.path))
    return Reply(250, "Directory removed.")


async def delete_file(ctx: SessionContext, ev: events.DeleteFile) -> Reply:
    await ctx.require(_DELE, ev.path).remove(ev.path)
    ctx.emit(seen.FileDeleted(ctx.origin, ev.path))
    return Reply(250, "File deleted.")


async def rename_from(ctx: SessionContext, ev: events.RenameFrom) -> Reply:
    if ev.path == "/":
        return Reply(550, "Cannot rename the root directory.")
    await ctx.require(_RNFR, ev.path).stat(ev.path)
    return Reply(350, "Ready for RNTO.")


async def rename_to(ctx: SessionContext, ev: events.RenameTo) -> Reply:
    storage = ctx.require(_RNTO, ev.src)
    ctx.require(_RNTO, ev.dst)
    if ev.dst == "/":
        return Reply(553, "Cannot replace the root directory.")
    await storage.rename(ev.src, ev.dst)
    ctx.emit(seen.Renamed(ctx.origin, ev.src, ev.dst))
    return Reply(250, "Rename successful.")


async def file_size(ctx: SessionContext, ev: events.FileSize) -> Reply:
    storage = ctx.require(_SIZE, ev.path)
    # Resumable mode: an interrupted upload's kept bytes are where a client
    # (curl -C -, lftp put -c) resumes from, and SIZE is how it asks.
    kept = await storage.resume_offset(ev.path)
    if kept is not None:
        return Reply(213, str(kept))
    info = await storage.stat(ev.path)
    if info.is_dir:
        raise IsADirectory("Not a regular file.")
    return Reply(213, str(info.size))


async def modification_time(ctx: SessionContext, ev: events.ModificationTime) -> Reply:
    info = await ctx.require(_MDTM, ev.path).stat(ev.path)
    if info.is_dir:
        raise IsADirectory("Not a regular file.")
    return Reply(213, listing.format_mdtm(info.mtime))


async def set_modification_time(ctx: SessionContext, ev: events.SetModificationTime) -> Reply:
    info = await ctx.require(_MFMT, ev.path).set_mtime(ev.path, ev.mtime)
    return Reply(213, f"Modify={listing.format_mdtm(info.mtime)}; {ev.path}")


async def machine_list_file(ctx: SessionContext, ev: events.MachineListFile) -> Reply:
    info = await ctx.require(_MLST, ev.path).stat(ev.path)
    letters = ctx.account.permissions_at(ev.path) if ctx.account else ""
    facts = listing.mlsx_facts(info, ev.facts, letters)
    return Reply(250, f"Listing {ev.path}", (f"{facts} {ev.path}",))


async def status(ctx: SessionContext, ev: events.Status) -> Reply:
    if ctx.transfer_running and ev.path is None:
        sent = ctx.data.connection.bytes if ctx.data.connection else 0
        return Reply(213, f"Status: transfer in progress, {sent} bytes so far.")
    if ev.path is None:
        return Reply(211, "fileferry status:", _server_status(ctx), "End of status.")
    storage = ctx.require(_STAT, ev.path)
    info = await storage.stat(ev.path)
    now = time.time()
    if info.is_dir:
        entries = await storage.list(ev.path, limit=ctx.config.limits.sessions.max_list_entries)
        entries.sort(key=lambda e: e.name)
        lines = tuple(listing.list_line(e, now) for e in entries)
    else:
        lines = (listing.list_line(info, now),)
    return Reply(213, f"Status of {ev.path}:", lines, "End of status.")


def _server_status(ctx: SessionContext) -> tuple[str, ...]:
    st = ctx.state
    mode = {DataMode.NONE: "none", DataMode.PASSIVE: "passive", DataMode.ACTIVE: "active"}
    return (
        f"Connected from {ctx.peer_host}",
        f"Logged in as {st.username}" if st.logged_in else "Not logged in",
        f"TYPE: {'ASCII' if st.ascii else 'BINARY'}; STRUcture: File; MODE: Stream",
        f"Data connection: {mode[st.data_mode]}",
        f"Working directory: {st.cwd}",
    )


HANDLERS: dict[type[events.Event], Handler] = {
    events.ChangeDirectory: change_directory,
    events.MakeDirectory: make_directory,
    events.RemoveDirectory: remove_directory,
    events.DeleteFile: delete_file,
    events.RenameFrom: rename_from,
    events.RenameTo: rename_to,
    events.FileSize: file_size,
    events.ModificationTime: modification_time,
    events.SetModificationTime: set_modification_time,
    events.MachineListFile: machine_list_file,
    events.Status: status,
}
