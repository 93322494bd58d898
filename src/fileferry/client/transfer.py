"""Moving one file either way: resume, segments, verification, and never a half file.

A download goes to ``NAME.fileferry-part`` beside its destination and is
renamed into place only after it was verified, so a file under the real name
is always whole. An interrupted download leaves the part file behind and the
next run continues it with REST+RETR. A segmented download (like lftp's
``pget``) fetches N ranges over N connections into the same part file and
keeps a small ``.segments`` record of how far each range got, so that it
resumes too.

An upload continues a shorter remote file (REST+STOR, or APPE on servers
without REST) when the user asks for it, or by itself when the server can
prove by digest that the remote part is this file's beginning. Otherwise it
starts over: appending to some other file would build garbage that a size
check cannot catch.

Either way, a verification that fails after a resume is retried once from
the start (the source may have changed in between); a second failure is an
error, and the bad copy is removed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import stat as stat_mod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from fileferry.client import integrity
from fileferry.client.datastream import DATA_LIMIT
from fileferry.client.errors import (
    ConnectionFailed,
    LocalError,
    RemoteError,
    VerificationFailed,
    local_error,
)
from fileferry.client.listing import RemoteEntry, basename
from fileferry.client.pool import Pool
from fileferry.client.remote import remote_stat, set_remote_mtime
from fileferry.digests import new_digest

PART_SUFFIX = ".fileferry-part"
SEGMENTS_SUFFIX = ".segments"
#: Ranges smaller than this are not worth a connection of their own.
MIN_SEGMENT = 256 * 1024
#: Local writes and reads are handed to a thread in batches of this size.
BATCH = 1 << 20
#: How often (bytes per range) the segment record is brought up to date.
_RECORD_EVERY = 4 << 20


class Progress(Protocol):
    """What a transfer reports; the CLI draws bars from it, scripts may ignore it."""

    def start(self, total: int | None, done: int) -> None: ...
    def advance(self, n: int) -> None: ...


class _Silent:
    def start(self, total: int | None, done: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


@dataclass(frozen=True, slots=True)
class TransferResult:
    remote: str
    local: str
    size: int
    #: Bytes that crossed the network this time.
    transferred: int
    #: Where the transfer continued from (0 when it started from scratch).
    resumed_from: int = 0
    #: What proved the copy whole: an algorithm name, "size", or None if not verified.
    verified_by: str | None = None
    #: Whether the modification time was carried across (None: it was not asked
    #: for). False when the server could not set it (no MFMT) or did not say it.
    mtime_kept: bool | None = None


# --- local files -----------------------------------------------------------------


class _Sink:
    """Positional writes to a local file, handed to a thread a megabyte at a time."""

    def __init__(self, fd: int, position: int, name: str) -> None:
        self.fd = fd
        self.position = position
        self.name = name
        self._buf = bytearray()

    @property
    def reached(self) -> int:
        """Where the next byte goes, counting what is still buffered."""
        return self.position + len(self._buf)

    def _write(self, data: bytes, at: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, at)
            view, at = view[n:], at + n

    async def write(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) >= BATCH:
            await self.flush()

    async def flush(self) -> None:
        if not self._buf:
            return
        data, self._buf = bytes(self._buf), bytearray()
        try:
            await asyncio.to_thread(self._write, data, self.position)
        except OSError as exc:
            raise local_error("write", self.name, exc) from None
        self.position += len(data)


def _open_part(path: Path, length: int) -> int:
    """Open (creating) the part file cut or extended to ``length``; blocking."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, length)
    except OSError:
        os.close(fd)
        raise
    return fd


async def _run_local(action: str, path: object, fn: Callable[[], int]) -> int:
    try:
        return await asyncio.to_thread(fn)
    except OSError as exc:
        raise local_error(action, path, exc) from None


def _is_special(path: Path) -> bool:
    """A device, FIFO or the like: written straight through, no part file, no resume."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat_mod.S_ISREG(mode) or stat_mod.S_ISDIR(mode))


# --- downloads -------------------------------------------------------------------


async def _fetch(
    pool: Pool,
    remote: str,
    sink: _Sink,
    end: int | None,
    progress: Progress,
    record: Callable[[int], None] | None = None,
) -> int:
    """RETR from ``sink.position`` up to ``end`` (or EOF); returns bytes received."""
    got = since_record = 0
    async with pool.connection() as conn, conn.transfer(f"RETR {remote}", sink.position) as stream:
        while end is None or sink.reached < end:
            want = DATA_LIMIT if end is None else min(DATA_LIMIT, end - sink.reached)
            chunk = await stream.read(want)
            if not chunk:
                if end is not None:
                    raise ConnectionFailed(f"{remote}: data ended before byte {end}")
                break
            await sink.write(chunk)
            got += len(chunk)
            progress.advance(len(chunk))
            since_record += len(chunk)
            if record is not None and since_record >= _RECORD_EVERY:
                await sink.flush()
                record(sink.position)
                since_record = 0
        await sink.flush()
        if record is not None:
            record(sink.position)
        if end is not None:
            stream.abort()  # what follows belongs to other ranges
    return got


class _Segments:
    """The ``.segments`` record: ``[start, done, end]`` per range."""

    def __init__(self, path: Path, size: int, ranges: list[list[int]]) -> None:
        self.path = path
        self.size = size
        self.ranges = ranges

    @classmethod
    def plan(cls, path: Path, size: int, count: int) -> _Segments:
        step = -(-size // count)
        return cls(path, size, [[s, s, min(s + step, size)] for s in range(0, size, step)])

    @classmethod
    def load(cls, path: Path, size: int) -> _Segments | None:
        try:
            data = json.loads(path.read_text())
            ranges = [[int(a), int(b), int(c)] for a, b, c in data["ranges"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if data.get("size") != size or not all(a <= b <= c <= size for a, b, c in ranges):
            return None
        return cls(path, size, ranges)

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"size": self.size, "ranges": self.ranges}))
            os.replace(tmp, self.path)
        except OSError as exc:
            raise local_error("write", self.path, exc) from None

    @property
    def done(self) -> int:
        return sum(b - a for a, b, _ in self.ranges)


async def _download_ranges(
    pool: Pool, remote: str, part: Path, segments: _Segments, progress: Progress
) -> tuple[int, int]:
    fd = await _run_local("write", part, lambda: _open_part(part, segments.size))
    segments.save()
    resumed = segments.done
    progress.start(segments.size, resumed)

    async def one(entry: list[int]) -> int:
        def record(position: int) -> None:
            entry[1] = position
            segments.save()

        if entry[1] >= entry[2]:
            return 0
        return await _fetch(
            pool, remote, _Sink(fd, entry[1], str(part)), entry[2], progress, record
        )

    try:
        moved = sum(await asyncio.gather(*(one(e) for e in segments.ranges)))
    finally:
        os.close(fd)
    segments.path.unlink(missing_ok=True)
    return moved, resumed


async def _download_part(
    pool: Pool,
    remote: str,
    part: Path,
    info: RemoteEntry,
    segments: int,
    resume: bool,
    can_rest: bool,
    progress: Progress,
) -> tuple[int, int]:
    """Fill ``part`` with the remote file; returns (bytes moved, resumed from)."""
    record = part.with_name(part.name + SEGMENTS_SUFFIX)
    size = info.size
    if size is not None and can_rest:
        plan = _Segments.load(record, size) if resume and part.exists() else None
        if plan is None and segments > 1 and size >= 2 * MIN_SEGMENT:
            plan = _Segments.plan(record, size, min(segments, size // MIN_SEGMENT))
        if plan is not None:
            return await _download_ranges(pool, remote, part, plan, progress)
    record.unlink(missing_ok=True)
    offset = 0
    if resume and can_rest and part.exists():
        offset = part.stat().st_size
        if size is not None and offset > size:
            offset = 0
    fd = await _run_local("write", part, lambda: _open_part(part, offset))
    progress.start(size, offset)
    try:
        if size is not None and offset == size:
            return 0, offset
        return await _fetch(pool, remote, _Sink(fd, offset, str(part)), None, progress), offset
    finally:
        os.close(fd)


async def _download_stream(
    pool: Pool,
    remote: str,
    fd: int,
    name: str,
    info: RemoteEntry,
    verify: bool,
    progress: Progress,
) -> TransferResult:
    """Straight into a descriptor (device, pipe, stdout): digested on the fly, since
    what was written cannot be read back."""
    async with pool.connection() as conn:
        methods = integrity.methods(conn) if verify else []
    digest = new_digest(methods[0].algorithm) if methods else None

    def write(fd: int, data: bytes) -> int:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if digest is not None:
            digest.update(data)
        return len(data)

    got = 0
    progress.start(info.size, 0)
    async with pool.connection() as conn, conn.transfer(f"RETR {remote}") as stream:
        while chunk := await stream.read():
            got += await _run_local("write", name, functools.partial(write, fd, chunk))
            progress.advance(len(chunk))
    verified = None
    if digest is not None:
        async with pool.connection() as conn:
            theirs = await integrity.remote_hash(conn, remote, methods[0], size=info.size)
        if theirs.hexdigest != digest.hexdigest():
            raise VerificationFailed(f"{remote}: {theirs.algorithm} differs after transfer")
        verified = theirs.algorithm
    elif verify and info.size is not None:
        if got != info.size:
            raise VerificationFailed(f"{remote}: got {got} bytes, server said {info.size}")
        verified = "size"
    return TransferResult(remote, name, got, got, 0, verified)


async def download(
    pool: Pool,
    remote: str,
    local: str | os.PathLike[str] | BinaryIO,
    *,
    resume: bool = True,
    verify: bool = True,
    segments: int = 1,
    preserve_mtime: bool = False,
    progress: Progress | None = None,
) -> TransferResult:
    """Fetch ``remote`` into ``local``: a file name, a folder to put it in, or an
    open binary file (written through its descriptor, e.g. ``sys.stdout.buffer``)."""
    progress = progress or _Silent()
    async with pool.connection() as conn:
        info = await remote_stat(conn, remote)
        can_rest = conn.has("REST")
    if info.is_dir:
        raise RemoteError(f"{remote}: is a directory (mirror copies folders)", 550)
    if not isinstance(local, (str, os.PathLike)):
        local.flush()
        name = getattr(local, "name", "<stream>")
        return await _download_stream(
            pool, remote, local.fileno(), str(name), info, verify, progress
        )
    target = Path(local)
    if target.is_dir():
        target = target / (basename(remote) or "download")
    # Through a symlink to the file it names: replacing the link itself would
    # turn it into a plain file.
    target = target.resolve() if target.is_symlink() else target
    if _is_special(target):
        fd = await _run_local("write", target, lambda: os.open(target, os.O_WRONLY | os.O_CLOEXEC))
        try:
            return await _download_stream(pool, remote, fd, str(target), info, verify, progress)
        finally:
            os.close(fd)
    part = target.with_name(target.name + PART_SUFFIX)
    for attempt in (1, 2):
        moved, resumed = await _download_part(
            pool, remote, part, info, segments, resume, can_rest, progress
        )
        verified = None
        if verify:
            try:
                async with pool.connection() as conn:
                    verified = await integrity.verify(conn, remote, part)
            except VerificationFailed:
                part.unlink(missing_ok=True)
                if resumed and attempt == 1:
                    resume = False
                    continue
                raise
        break
    try:
        os.replace(part, target)
        if preserve_mtime and info.mtime is not None:
            os.utime(target, (info.mtime, info.mtime))
        size = target.stat().st_size
    except OSError as exc:
        raise local_error("write", target, exc) from None
    kept = info.mtime is not None if preserve_mtime else None
    return TransferResult(remote, str(target), size, moved, resumed, verified, kept)


# --- uploads ---------------------------------------------------------------------


async def _send(
    pool: Pool, source: str, remote: str, offset: int, can_rest: bool, progress: Progress
) -> int:
    fd = await _run_local("read", source, lambda: os.open(source, os.O_RDONLY | os.O_CLOEXEC))
    command = f"STOR {remote}" if can_rest or not offset else f"APPE {remote}"
    position = offset
    try:
        async with (
            pool.connection() as conn,
            conn.transfer(command, offset if can_rest else 0) as stream,
        ):
            while chunk := await _run_read(source, fd, position):
                await stream.write(chunk)
                position += len(chunk)
                progress.advance(len(chunk))
    finally:
        os.close(fd)
    return position - offset


async def _run_read(source: str, fd: int, position: int) -> bytes:
    try:
        return await asyncio.to_thread(os.pread, fd, BATCH, position)
    except OSError as exc:
        raise local_error("read", source, exc) from None


async def upload(
    pool: Pool,
    local: str | os.PathLike[str],
    remote: str,
    *,
    resume: bool | None = None,
    verify: bool = True,
    preserve_mtime: bool = False,
    progress: Progress | None = None,
) -> TransferResult:
    """Send ``local`` to ``remote``.

    ``resume``: True continues a shorter remote file, False never does, None
    (the default) continues only when a digest proves the remote part matches.
    """
    progress = progress or _Silent()
    source = os.fspath(local)
    try:
        st = os.stat(source)
    except OSError as exc:
        raise local_error("read", source, exc) from None
    if stat_mod.S_ISDIR(st.st_mode):
        raise LocalError(f"{source} is a folder (mirror copies folders)")
    size = st.st_size
    offset = 0
    async with pool.connection() as conn:
        can_rest = conn.has("REST")
        if resume is not False:
            existing = await integrity.remote_size(conn, remote)
            if existing and existing < size:
                proven = resume or await integrity.same_prefix(conn, remote, source, existing)
                offset = existing if proven else 0
    for attempt in (1, 2):
        progress.start(size, offset)
        moved = await _send(pool, source, remote, offset, can_rest, progress)
        verified = None
        if verify:
            try:
                async with pool.connection() as conn:
                    verified = await integrity.verify(conn, remote, source, size)
            except VerificationFailed:
                if offset and attempt == 1:
                    offset = 0
                    continue
                raise
        break
    kept = None
    if preserve_mtime:
        async with pool.connection() as conn:
            kept = await set_remote_mtime(conn, remote, st.st_mtime)
    return TransferResult(remote, source, size, moved, offset, verified, kept)
