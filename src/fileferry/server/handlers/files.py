"""File and directory commands answered on the control connection."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fileferry.errors import IsADirectory, NotADirectory
from fileferry.protocol import events, listing
from fileferry.protocol.replies import Reply, quote_path
from fileferry.protocol.state import DataMode

if TYPE_CHECKING:
    from fileferry.server.control import ControlConnection


async def change_directory(conn: ControlConnection, ev: events.ChangeDirectory) -> None:
    info = await conn.require("e", ev.path).stat(ev.path)
    if not info.is_dir:
        raise NotADirectory
    conn.reply(Reply(250, "Directory successfully changed."), ev)


async def make_directory(conn: ControlConnection, ev: events.MakeDirectory) -> None:
    await conn.require("m", ev.path).mkdir(ev.path)
    conn.log_event("mkdir", path=ev.path)
    conn.reply(Reply(257, f"{quote_path(ev.path)} created."), ev)


async def remove_directory(conn: ControlConnection, ev: events.RemoveDirectory) -> None:
    if ev.path == "/":
        conn.reply(Reply(550, "Cannot remove the root directory."), ev)
        return
    await conn.require("d", ev.path).rmdir(ev.path)
    conn.log_event("rmdir", path=ev.path)
    conn.reply(Reply(250, "Directory removed."), ev)


async def delete_file(conn: ControlConnection, ev: events.DeleteFile) -> None:
    await conn.require("d", ev.path).remove(ev.path)
    conn.log_event("delete", path=ev.path)
    conn.reply(Reply(250, "File deleted."), ev)


async def rename_from(conn: ControlConnection, ev: events.RenameFrom) -> None:
    if ev.path == "/":
        conn.reply(Reply(550, "Cannot rename the root directory."), ev)
        return
    await conn.require("f", ev.path).stat(ev.path)
    conn.reply(Reply(350, "Ready for RNTO."), ev)


async def rename_to(conn: ControlConnection, ev: events.RenameTo) -> None:
    storage = conn.require("f", ev.src)
    conn.require("f", ev.dst)
    if ev.dst == "/":
        conn.reply(Reply(553, "Cannot replace the root directory."), ev)
        return
    await storage.rename(ev.src, ev.dst)
    conn.log_event("rename", src=ev.src, dst=ev.dst)
    conn.reply(Reply(250, "Rename successful."), ev)


async def file_size(conn: ControlConnection, ev: events.FileSize) -> None:
    info = await conn.require("l", ev.path).stat(ev.path)
    if info.is_dir:
        raise IsADirectory("Not a regular file.")
    conn.reply(Reply(213, str(info.size)), ev)


async def modification_time(conn: ControlConnection, ev: events.ModificationTime) -> None:
    info = await conn.require("l", ev.path).stat(ev.path)
    if info.is_dir:
        raise IsADirectory("Not a regular file.")
    conn.reply(Reply(213, listing.format_mdtm(info.mtime)), ev)


async def set_modification_time(conn: ControlConnection, ev: events.SetModificationTime) -> None:
    info = await conn.require("T", ev.path).set_mtime(ev.path, ev.mtime)
    conn.reply(Reply(213, f"Modify={listing.format_mdtm(info.mtime)}; {ev.path}"), ev)


async def machine_list_file(conn: ControlConnection, ev: events.MachineListFile) -> None:
    info = await conn.require("l", ev.path).stat(ev.path)
    letters = conn.account.permissions_at(ev.path) if conn.account else ""
    facts = listing.mlsx_facts(info, ev.facts, letters)
    conn.reply(Reply(250, f"Listing {ev.path}", (f"{facts} {ev.path}",)), ev)


async def status(conn: ControlConnection, ev: events.Status) -> None:
    task = conn.transfer_task
    if task is not None and not task.done() and ev.path is None:
        sent = conn.data.connection.bytes if conn.data.connection else 0
        conn.reply(Reply(213, f"Status: transfer in progress, {sent} bytes so far."), ev)
        return
    if ev.path is None:
        conn.reply(Reply(211, "fileferry status:", _server_status(conn), "End of status."), ev)
        return
    storage = conn.require("l", ev.path)
    info = await storage.stat(ev.path)
    now = time.time()
    if info.is_dir:
        entries = await storage.list(
            ev.path, limit=conn.app.config.limits.sessions.max_list_entries
        )
        entries.sort(key=lambda e: e.name)
        lines = tuple(listing.list_line(e, now) for e in entries)
    else:
        lines = (listing.list_line(info, now),)
    conn.reply(Reply(213, f"Status of {ev.path}:", lines, "End of status."), ev)


def _server_status(conn: ControlConnection) -> tuple[str, ...]:
    st = conn.session.state
    mode = {DataMode.NONE: "none", DataMode.PASSIVE: "passive", DataMode.ACTIVE: "active"}
    return (
        f"Connected from {conn.peer_host}",
        f"Logged in as {st.username}" if st.logged_in else "Not logged in",
        f"TYPE: {'ASCII' if st.ascii else 'BINARY'}; STRUcture: File; MODE: Stream",
        f"Data connection: {mode[st.data_mode]}",
        f"Working directory: {st.cwd}",
    )


HANDLERS = {
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
