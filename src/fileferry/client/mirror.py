"""Make one tree look like another: local to remote or remote to local.

A mirror is planned before anything moves: both trees are listed, compared
by relative path, and turned into a list of actions (make a folder, copy a
file, delete what the source no longer has). ``--dry-run`` prints that
plan and stops, so the plan is exactly what a real run does.

A file is copied when the destination lacks it, or its size or modification
time differs (with ``only_newer``: only when the source is newer). Copies
carry the source's modification time across (MFMT on the server, utime
locally), which is what makes the second run of a mirror copy nothing.

Times are compared no finer than they are known: a ``LIST`` shows minutes,
or only the day for old files, so a difference within that is no
difference. A server that cannot set times (no MFMT, as vsftpd) shows when
it received a file, which is never the source's time; there a file counts
as changed only when the source is newer than that copy, and where the
listing is too coarse to tell, MDTM gives the copy's time to the second.
Include and exclude patterns are shell globs matched against the relative
path and against the bare name; an excluded folder is not entered, and
excluded files at the destination are never deleted.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fileferry.client.api import Client
from fileferry.client.errors import ClientError, local_error
from fileferry.client.listing import join
from fileferry.client.remote import remote_mtime
from fileferry.client.transfer import PART_SUFFIX, SEGMENTS_SUFFIX, Progress


class Reporter(Protocol):
    """Where a mirror shows its progress (the CLI's bars); may be absent."""

    def file(self, name: str) -> FileReport: ...
    def note(self, text: str) -> None: ...


class FileReport(Progress, Protocol):
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Item:
    is_dir: bool
    size: int = 0
    mtime: float | None = None
    #: How coarse ``mtime`` is, in seconds (a listing's minute or day).
    precision: float = 1.0


@dataclass(frozen=True, slots=True)
class Options:
    delete: bool = False
    only_newer: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    parallel: int = 1
    verify: bool = True


@dataclass(frozen=True, slots=True)
class Action:
    #: "mkdir", "copy", "delete" or "rmdir".
    kind: str
    path: str
    size: int = 0
    reason: str = ""

    def __str__(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.kind:<6} {self.path}{why}"


@dataclass
class Report:
    actions: list[Action]
    copied: int = 0
    bytes: int = 0
    deleted: int = 0
    failures: list[tuple[str, ClientError]] = field(default_factory=list)


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def _selected(rel: str, is_dir: bool, options: Options) -> bool:
    if _matches(rel, options.exclude):
        return False
    return is_dir or not options.include or _matches(rel, options.include)


def _ours(name: str) -> bool:
    """Our own leftovers (unfinished downloads) are no part of any tree."""
    return name.endswith((PART_SUFFIX, PART_SUFFIX + SEGMENTS_SUFFIX))


def local_tree(root: Path, options: Options) -> dict[str, Item]:
    """Relative path → item for everything selected under ``root``; blocking."""
    tree: dict[str, Item] = {}
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        try:
            with os.scandir(root / rel_dir if rel_dir else root) as it:
                entries = list(it)
        except OSError as exc:
            raise local_error("list", root / rel_dir, exc) from None
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if _selected(rel, True, options):
                        tree[rel] = Item(True)
                        pending.append(rel)
                elif entry.is_file() and not _ours(entry.name) and _selected(rel, False, options):
                    st = entry.stat()
                    tree[rel] = Item(False, st.st_size, st.st_mtime)
            except OSError as exc:
                raise local_error("read", entry.path, exc) from None
    return tree


async def remote_tree(client: Client, root: str, options: Options) -> dict[str, Item]:
    tree: dict[str, Item] = {}
    prefix = {"": 0, "/": 1}.get(root, len(root.rstrip("/")) + 1)
    async for _, dirs, files in client.walk(root):
        keep = []
        for d in dirs:
            rel = d.path[prefix:]
            if _selected(rel, True, options):
                tree[rel] = Item(True)
                keep.append(d)
        dirs[:] = keep
        for f in files:
            rel = f.path[prefix:]
            if _selected(rel, False, options):
                tree[rel] = Item(False, f.size or 0, f.mtime, f.precision)
    return tree


def plan(
    source: dict[str, Item], dest: dict[str, Item], options: Options, times_kept: bool = True
) -> list[Action]:
    """The actions that make ``dest`` match ``source``: folders, then files, then deletions.

    ``times_kept``: copies carry the source's time (else the destination's time
    is when the copy was written, and only a newer source means a change).
    """
    actions: list[Action] = []
    for rel in sorted(source):
        item, there = source[rel], dest.get(rel)
        if item.is_dir:
            if there is None or not there.is_dir:
                if there is not None and options.delete:
                    actions.append(Action("delete", rel, reason="a folder replaces it"))
                actions.append(Action("mkdir", rel))
            continue
        if there is not None and there.is_dir:
            if not options.delete:
                actions.append(Action("conflict", rel, reason="a folder is in the way; --delete"))
                continue
            actions.append(Action("delete", rel, reason="a file replaces it"))
            there = None
        if there is None:
            reason = "new"
        elif options.only_newer:
            reason = "newer" if _newer(item, there) else ""
        elif there.size != item.size:
            reason = "size differs"
        elif times_kept:
            reason = "time differs" if _apart(item, there) else ""
        else:
            reason = "changed since copied" if _newer(item, there) else ""
        if reason:
            actions.append(Action("copy", rel, item.size, reason))
    if options.delete:
        gone = [rel for rel in dest if rel not in source and not _inside_gone(rel, dest, source)]
        for rel in sorted(gone, key=lambda r: (-r.count("/"), r)):
            actions.append(Action("rmdir" if dest[rel].is_dir else "delete", rel))
    return actions


def _slack(a: Item, b: Item) -> float:
    """Times closer than the coarser of the two precisions are the same time."""
    return max(a.precision, b.precision)


def _apart(item: Item, there: Item) -> bool:
    if item.mtime is None or there.mtime is None:
        return False  # nothing to compare: the size has decided
    return abs(item.mtime - there.mtime) >= _slack(item, there)


def _newer(item: Item, there: Item) -> bool:
    if there.mtime is None:
        return True
    return (item.mtime or 0) - there.mtime >= _slack(item, there)


def _inside_gone(rel: str, dest: dict[str, Item], source: dict[str, Item]) -> bool:
    """Under a folder that is itself deleted recursively? Then no separate action."""
    parts = rel.split("/")
    for i in range(1, len(parts)):
        parent = "/".join(parts[:i])
        if parent in dest and parent not in source:
            return True
    return False


async def prepare(
    client: Client, local_root: Path, remote_root: str, upload: bool, options: Options
) -> Report:
    """List both sides and plan; nothing is changed (this is all ``--dry-run`` does)."""
    if upload:
        if not local_root.is_dir():
            raise ClientError(f"{local_root} is not a folder")
        source = await asyncio.to_thread(local_tree, local_root, options)
        dest = {}
        if await _remote_dir(client, remote_root):
            dest = await remote_tree(client, remote_root, options)
    else:
        source = await remote_tree(client, remote_root, options)
        dest = {}
        if local_root.is_dir():
            dest = await asyncio.to_thread(local_tree, local_root, options)
    offered = {line.split(" ")[0].upper() for line in client.features}
    # Downloads set the local time from MLST or MDTM; uploads need MFMT.
    kept = "MFMT" in offered if upload else bool(offered & {"MLST", "MDTM"})
    if upload and not kept and "MDTM" in offered:
        await _sharpen(client, remote_root, source, dest)
    return Report(plan(source, dest, options, kept))


async def _sharpen(
    client: Client, remote_root: str, source: dict[str, Item], dest: dict[str, Item]
) -> None:
    """MDTM for the remote copies the listing is too coarse to judge: those whose
    source was changed in the listed minute (or day) the copy was written in.
    Older sources, the usual case, need no round trip."""
    unsure = [
        rel
        for rel, there in dest.items()
        if there.precision > 1
        and there.mtime is not None
        and (item := source.get(rel)) is not None
        and not item.is_dir
        and not there.is_dir
        and item.size == there.size
        and item.mtime is not None
        and 0 < item.mtime - there.mtime < there.precision
    ]
    if not unsure:
        return
    async with client.pool.connection() as conn:
        for rel in unsure:
            mtime = await remote_mtime(conn, join(remote_root, rel))
            if mtime is not None:
                dest[rel] = Item(False, dest[rel].size, mtime)


async def apply(
    client: Client,
    local_root: Path,
    remote_root: str,
    upload: bool,
    options: Options,
    report: Report,
    reporter: Reporter | None = None,
) -> Report:
    """Carry out a prepared plan; failures of single files are collected, not raised."""
    if not upload:
        _mkdir_local(local_root)
    elif remote_root not in ("", "/"):
        await client.mkdir(remote_root, parents=True)
    await _execute(client, local_root, remote_root, upload, options, report, reporter)
    return report


async def run(
    client: Client,
    local_root: Path,
    remote_root: str,
    upload: bool,
    options: Options,
    reporter: Reporter | None = None,
) -> Report:
    """Mirror local → remote (``upload``) or remote → local; returns what happened."""
    report = await prepare(client, local_root, remote_root, upload, options)
    return await apply(client, local_root, remote_root, upload, options, report, reporter)


async def _remote_dir(client: Client, path: str) -> bool:
    if path in ("", "/"):
        return True
    try:
        return (await client.stat(path)).is_dir
    except ClientError:
        return False


def _mkdir_local(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise local_error("create", path, exc) from None


def _local(root: Path, rel: str) -> Path:
    return root.joinpath(*rel.split("/"))


async def _execute(
    client: Client,
    local_root: Path,
    remote_root: str,
    upload: bool,
    options: Options,
    report: Report,
    reporter: Reporter | None,
) -> None:
    copies = [a for a in report.actions if a.kind == "copy"]
    limit = asyncio.Semaphore(max(1, options.parallel))

    async def step(action: Action) -> None:
        remote = join(remote_root, action.path)
        local = _local(local_root, action.path)
        try:
            if action.kind == "conflict":
                raise ClientError(f"{action.path}: {action.reason}")
            if action.kind == "mkdir":
                if upload:
                    await client.mkdir(remote, parents=True)
                else:
                    _mkdir_local(local)
            elif action.kind in ("delete", "rmdir"):
                if upload:
                    await client.remove(remote, recursive=True)
                else:
                    await asyncio.to_thread(_remove_local, local)
                report.deleted += 1
            else:
                async with limit:
                    bar = reporter.file(action.path) if reporter else None
                    try:
                        if upload:
                            result = await client.upload(
                                local,
                                remote,
                                verify=options.verify,
                                preserve_mtime=True,
                                progress=bar,
                            )
                        else:
                            result = await client.download(
                                remote,
                                local,
                                verify=options.verify,
                                preserve_mtime=True,
                                progress=bar,
                            )
                    finally:
                        if bar is not None:
                            bar.close()
                report.copied += 1
                report.bytes += result.transferred
        except ClientError as exc:
            report.failures.append((action.path, exc))
            if reporter is not None:
                reporter.note(f"failed {action.path}: {exc}")

    for action in report.actions:
        if action.kind in ("mkdir", "conflict") or (action.kind == "delete" and action.reason):
            await step(action)
    await asyncio.gather(*(step(a) for a in copies))
    for action in report.actions:
        if action.kind in ("delete", "rmdir") and not action.reason:
            await step(action)


def _remove_local(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        raise local_error("delete", path, exc) from None
