"""Proving a copy is whole: the server's digest against ours, or at least the size.

A transfer can end with a 226 and still be wrong: a resumed download whose
remote file changed in between, a segment written at the wrong offset, a
middlebox that mangled bytes. The strongest check the server offers wins:
``HASH`` (draft-bryan-ftpext-hash) with the best algorithm it lists, then
the de-facto ``XSHA256``/``XSHA512``/``XSHA1``/``XMD5``/``XCRC``, then
``SIZE``. A server that advertises a digest but fails to deliver one (busy,
450) is not held against the transfer: the check falls back to the size.

Local digests read the file in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from fileferry.client.connection import Connection
from fileferry.client.errors import ClientError, RemoteError, VerificationFailed, local_error
from fileferry.digests import new_digest
from fileferry.protocol import hashcommands
from fileferry.protocol.listparse import parse_size

_CHUNK = 1 << 20
#: Slowest digest rate a server is granted (bytes/s) before its reply counts as late.
_SLOWEST_DIGEST = 20_000_000


@dataclass(frozen=True, slots=True)
class RemoteHash:
    algorithm: str
    #: Lower-case hex.
    hexdigest: str


@dataclass(frozen=True, slots=True)
class Method:
    """How to ask this server for a digest: ``HASH`` with an algorithm, or an X* verb."""

    command: str
    algorithm: str


def methods(conn: Connection) -> list[Method]:
    """Every digest the server offers, strongest first (HASH before the X* verbs)."""
    found: list[Method] = []
    listed = conn.feature("HASH")
    if listed is not None:
        names = hashcommands.parse_feature(listed)
        found += [Method("HASH", a) for a in hashcommands.ALGORITHMS if a in names]
    found += [Method(a.verb, a.name) for a in hashcommands.TABLE if conn.has(a.verb)]
    return found


#: How often, and after how long a pause, a busy (450) HASH is asked again.
_BUSY_RETRIES = 8
_BUSY_PAUSE = 0.05


async def remote_hash(
    conn: Connection,
    path: str,
    method: Method,
    start: int = 0,
    end: int | None = None,
    size: int | None = None,
) -> RemoteHash:
    """The server's digest of ``path`` (bytes ``[start, end)`` if a range is given).

    ``size`` (the bytes to digest, when known) stretches the wait for the
    reply: the server reads the whole file before it says anything.
    """
    wait = conn.options.timeout + (size or 0) / _SLOWEST_DIGEST
    if method.command != "HASH":
        try:
            arg = hashcommands.legacy_argument(path, start, end)
        except ValueError as exc:
            raise RemoteError(f"{method.command}: {exc}", 501) from None
        reply = await conn.command(f"{method.command} {arg}", wait)
        if reply.code not in (200, 213, 250):
            raise RemoteError(f"{method.command} {path}: {reply}", reply.code)
        try:
            hexdigest = hashcommands.parse_legacy_answer(
                "\n".join(reply.all_lines), method.algorithm
            )
        except ValueError:
            raise RemoteError(
                f"cannot read a {method.algorithm} digest in {reply}", reply.code
            ) from None
        return RemoteHash(method.algorithm, hexdigest)
    chosen = await conn.command(f"OPTS HASH {method.algorithm}")
    if chosen.code != 200:
        raise RemoteError(f"OPTS HASH {method.algorithm}: {chosen}", chosen.code)
    if end is not None and end <= start:
        return RemoteHash(method.algorithm, new_digest(method.algorithm).hexdigest())
    for attempt in range(_BUSY_RETRIES):
        if end is not None:
            ranged = await conn.command(f"RANG {start} {end - 1}")
            if ranged.code != 350:
                raise RemoteError(f"RANG: {ranged}", ranged.code)
        reply = await conn.command(f"HASH {path}", wait)
        if reply.code != 450:
            break
        # 450 is the draft's "busy, try again": the server caps digests running
        # at once, so several parallel transfers verifying together may see it.
        await asyncio.sleep(_BUSY_PAUSE * (attempt + 1))
    if reply.code != 213:
        raise RemoteError(f"HASH {path}: {reply}", reply.code)
    # The answer is the last line: a server may send "213-" lines while it works.
    try:
        answer = hashcommands.parse_answer(reply.last_line)
    except ValueError as exc:
        raise RemoteError(f"HASH: {exc}", reply.code) from None
    if answer.algorithm != method.algorithm:
        raise RemoteError(f"HASH answered with another algorithm: {reply}", reply.code)
    if end is not None and (answer.first, answer.last) != (start, end - 1):
        raise RemoteError(f"HASH answered for another range: {reply}", reply.code)
    return RemoteHash(method.algorithm, answer.hexdigest)


def digest_file(path: str | os.PathLike[str], algorithm: str, end: int | None = None) -> str:
    """Digest of a local file's first ``end`` bytes (all of it if None); blocking."""
    digest = new_digest(algorithm)
    left = end
    with open(path, "rb") as fh:
        while left is None or left > 0:
            chunk = fh.read(_CHUNK if left is None else min(_CHUNK, left))
            if not chunk:
                break
            digest.update(chunk)
            if left is not None:
                left -= len(chunk)
    return digest.hexdigest()


async def local_hash(path: str | os.PathLike[str], algorithm: str, end: int | None = None) -> str:
    try:
        return await asyncio.to_thread(digest_file, path, algorithm, end)
    except OSError as exc:
        raise local_error("read", path, exc) from None


async def remote_size(conn: Connection, path: str) -> int | None:
    """SIZE of a remote file, or None if the server does not know it (or it is missing)."""
    reply = await conn.command(f"SIZE {path}")
    return parse_size(reply.text) if reply.code == 213 else None


async def verify(
    conn: Connection, remote: str, local: str | os.PathLike[str], size: int | None = None
) -> str | None:
    """Check ``local`` against ``remote``; returns what was compared (None: nothing
    could be, the server tells neither digest nor size), or raises.

    ``size`` is the local size when already known. ``VerificationFailed``
    names both sides; a server that cannot deliver its digest falls back to
    the size.
    """
    try:
        local_size = size if size is not None else os.stat(local).st_size
    except OSError as exc:
        raise local_error("read", local, exc) from None
    for method in methods(conn):
        try:
            theirs = await remote_hash(conn, remote, method, size=local_size)
        except RemoteError:
            continue
        ours = await local_hash(local, method.algorithm)
        if ours != theirs.hexdigest:
            raise VerificationFailed(
                f"{remote}: {method.algorithm} differs after transfer"
                f" (server {theirs.hexdigest[:16]}..., local {ours[:16]}...)"
            )
        return method.algorithm
    their_size = await remote_size(conn, remote)
    if their_size is None:
        return None
    if their_size != local_size:
        raise VerificationFailed(
            f"{remote}: size differs after transfer (server {their_size}, local {local_size})"
        )
    return "size"


async def same_prefix(conn: Connection, remote: str, local: str, length: int) -> bool:
    """Do the first ``length`` bytes match on both sides? False when nobody can tell."""
    for method in methods(conn):
        try:
            theirs = await remote_hash(conn, remote, method, 0, length, length)
        except ClientError:
            continue
        return await local_hash(local, method.algorithm, length) == theirs.hexdigest
    return False
