"""How much a tree holds: bytes and regular files, found by walking any storage.

Quotas need a starting figure, and ``fileferry user show`` needs the same
figure without a server, so the walk lives here, written against the
:class:`Storage` interface alone (one ``list`` per directory, which already
carries every size). It is careful where a naive walk is not:

* a directory reached twice (an in-root symlink to an ancestor) is walked
  once, by its ``unique`` identity, so a loop cannot hang it;
* folders under ``exclude`` (read-only virtual folders) are skipped;
* a directory that vanishes or cannot be read mid-walk is skipped, not fatal:
  a figure is still wanted, and it is walked again whenever the server does
  not trust the figure it kept (see ``fileferry/limits/usagefile.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from fileferry.errors import StorageError
from fileferry.paths import join
from fileferry.storage.base import Storage


@dataclass(frozen=True, slots=True)
class Usage:
    bytes: int = 0
    files: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.bytes + other.bytes, self.files + other.files)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.bytes - other.bytes, self.files - other.files)


@dataclass(frozen=True, slots=True)
class Tally:
    """A whole tree counted once: what it holds, and whether the count reached its end.

    ``complete`` is False when the count was stopped at its time bound: the
    figure is then a lower bound ("at least"), still worth showing on a
    bucket too large to list in one go.
    """

    usage: Usage
    complete: bool = True


class Countable(Protocol):
    """A storage that counts a tree cheaper than a walk: an object store's flat listing.

    Blocking on purpose: the caller runs it on a thread of its own, so pages
    of a large bucket are fetched and parsed beside the event loop, never on
    it. It stops early (``complete`` False) once ``time.monotonic()`` passes
    ``deadline`` or ``stop`` is set, and raises a ``StorageError`` when the
    store cannot be read at all (a figure of 0 would be a lie).
    """

    def count_blocking(self, path: str, deadline: float, stop: threading.Event) -> Tally: ...


def _excluded(path: str, exclude: tuple[str, ...]) -> bool:
    return any(path == e or path.startswith(e.rstrip("/") + "/") for e in exclude)


async def measure(storage: Storage, root: str = "/", exclude: Iterable[str] = ()) -> Usage:
    """Total size and number of regular files under ``root``."""
    skip = tuple(exclude)
    total_bytes = 0
    total_files = 0
    seen: set[str] = set()
    pending = [root]
    while pending:
        path = pending.pop()
        try:
            entries = await storage.list(path)
            # Resumable mode's kept partials are charged though not listed.
            total_bytes += await storage.kept_bytes(path)
        except StorageError:
            continue
        for entry in entries:
            try:
                child = join(path, entry.name)
            except ValueError:
                continue
            if _excluded(child, skip):
                continue
            if entry.is_dir:
                if entry.unique is not None:
                    if entry.unique in seen:
                        continue
                    seen.add(entry.unique)
                pending.append(child)
            else:
                total_bytes += entry.size
                total_files += 1
    return Usage(total_bytes, total_files)
