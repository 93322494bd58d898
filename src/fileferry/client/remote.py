"""What the server says about one path: its kind, size and time, and setting the time.

MLST (RFC 3659) answers all three in one round trip. Servers without it get
SIZE and MDTM, and a CWD there and back to tell a directory from a missing
file, since nothing else in RFC 959 can. Both transfers and the API start
here, so the fallbacks are written once.
"""

from __future__ import annotations

import contextlib

from fileferry.client import integrity
from fileferry.client.connection import Connection, raise_for
from fileferry.client.errors import RemoteError
from fileferry.client.listing import Kind, RemoteEntry, basename, join
from fileferry.protocol.listing import format_mdtm, parse_mdtm
from fileferry.protocol.listparse import parse_facts, parse_size
from fileferry.protocol.replies import unquote_path


async def remote_stat(conn: Connection, path: str) -> RemoteEntry:
    """Type, size and mtime of one remote path; ``RemoteError`` if it is missing."""
    if conn.has("MLST"):
        reply = await conn.command(f"MLST {path}")
        if reply.code == 250 and reply.lines:
            # RFC 3659 7.2: the entry is the one line between the first and the last.
            facts = parse_facts(reply.lines[0].strip().partition(" ")[0])
            kind_text = facts.get("type", "").lower()
            kind = Kind.DIR if kind_text in ("dir", "cdir", "pdir") else Kind.FILE
            mtime = None
            with contextlib.suppress(ValueError, KeyError):
                mtime = parse_mdtm(facts["modify"])
            sized = parse_size(facts.get("size", ""))
            return RemoteEntry(basename(path), path, kind, sized, mtime)
        if reply.code not in (250, 500, 502):
            raise RemoteError(f"{path}: {reply}", reply.code)
    length = await integrity.remote_size(conn, path)
    if length is None:
        if await _is_remote_dir(conn, path):
            return RemoteEntry(basename(path), path, Kind.DIR)
        probe = await conn.command(f"MDTM {path}")
        if probe.code != 213:
            raise RemoteError(f"{path}: {probe}", probe.code)
    return RemoteEntry(basename(path), path, Kind.FILE, length, await remote_mtime(conn, path))


async def remote_mtime(conn: Connection, path: str) -> float | None:
    """MDTM (RFC 3659): a file's time to the second, in UTC; None if the server will not say."""
    reply = await conn.command(f"MDTM {path}")
    if reply.code == 213:
        with contextlib.suppress(ValueError):
            return parse_mdtm(reply.text.strip())
    return None


async def _is_remote_dir(conn: Connection, path: str) -> bool:
    """Without MLST the only sure test is to CWD there (and back where we were)."""
    pwd = await conn.command("PWD")
    if pwd.code != 257:
        return False
    try:
        here = unquote_path(pwd.text)
    except ValueError:
        return False
    if (await conn.command(f"CWD {path}")).code != 250:
        return False
    raise_for(await conn.command(f"CWD {here}"), f"CWD {here}")
    return True


async def set_remote_mtime(conn: Connection, path: str, mtime: float) -> bool:
    """MFMT, where the server has it: mirrors compare times, so keep them equal."""
    if not conn.has("MFMT"):
        return False
    reply = await conn.command(f"MFMT {format_mdtm(int(mtime))} {path}")
    return reply.code == 213


async def make_dirs(conn: Connection, path: str) -> None:
    """MKD each missing folder of ``path`` from the top; folders already there are fine.

    RFC 959 has no "make parents", and servers word "exists" differently, so a
    refused MKD is judged by looking at what is there.
    """
    done = "/" if path.startswith("/") else ""
    for part in [p for p in path.split("/") if p]:
        done = join(done, part)
        reply = await conn.command(f"MKD {done}")
        if reply.is_positive:
            continue
        try:
            there = (await remote_stat(conn, done)).is_dir
        except RemoteError:
            there = False
        if not there:
            raise_for(reply, f"mkdir {done}")


async def ensure_dir(conn: Connection, path: str) -> bool:
    """Make folder ``path`` (and its parents) unless it is there; True if it was made.

    One look first: a put into a folder that exists, the usual case, should
    not cost a MKD per level of its path."""
    if path in ("", "/"):
        return False
    try:
        if (await remote_stat(conn, path)).is_dir:
            return False
    except RemoteError:
        pass
    await make_dirs(conn, path)
    return True
