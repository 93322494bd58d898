"""Directory scans for the local backend: one pass of ``scandir`` into plain rows.

This is the hot loop of LIST, MLSD and NLST, kept apart from ``local.py``
(which owns the jail, reads and uploads) so it can be read, measured and
tuned on its own. It runs in a worker thread, never on the event loop.

Why rows and not :class:`~fileferry.storage.base.FileInfo`: a folder of
10,000 entries costs one ``lstat`` each, which no listing can avoid, and
then whatever Python builds per entry. A tuple is the cheapest record
Python has; the listing formatter consumes it in the same thread (see
``LocalStorage.list_rendered``), so nothing per entry outlives the scan.

The rules are those ``local.py`` documents for ``list``: in-progress upload
names are never shown, and symlinks are followed only when they resolve
inside the root (dangling, looping, escaping or unreadable ones are
omitted, so a client never sees a name it cannot use). Names are decoded
the way ``os.fsdecode`` does, so undecodable bytes become surrogate escapes.
"""

from __future__ import annotations

import os
import stat as stat_mod
import sys
from collections.abc import Callable

from fileferry.errors import NotADirectory
from fileferry.storage.base import Row

__all__ = ["scan_rows"]

#: What ``os.fsdecode`` uses, applied directly in the loop (minus its type checks).
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()


def scan_rows(
    real: bytes,
    inside: Callable[[bytes], bool],
    hidden: bytes,
    limit: int | None,
    *,
    names_only: bool = False,
    unique: bool = True,
) -> list[Row]:
    """The rows of directory ``real`` (an already jailed real path), unsorted.

    ``inside`` says whether a symlink's resolved target is within the root;
    names starting with ``hidden`` are skipped; at most ``limit`` rows are
    returned. ``names_only`` skips the per-entry ``lstat`` for entries that
    are not symlinks (size, mtime and mode are then zeros): NLST needs no
    more. ``unique=False`` leaves the ``unique`` field ``None``. Raises
    ``OSError`` (``NotADirectory`` when ``limit`` is 0 and ``real`` is a file).
    """
    out: list[Row] = []
    if limit is not None and limit <= 0:
        # Nothing to return, but a bad path must still be reported.
        if not stat_mod.S_ISDIR(os.stat(real).st_mode):
            raise NotADirectory()
        return out
    cap = limit if limit is not None else -1
    # Everything the loop touches is a local: attribute and global lookups
    # are a measurable share of ~3 µs per entry.
    append, isdir, realpath, stat = out.append, stat_mod.S_ISDIR, os.path.realpath, os.stat
    encoding, errors = _FS_ENCODING, _FS_ERRORS
    with os.scandir(real) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(hidden):
                continue
            try:
                if entry.is_symlink():
                    target = realpath(entry.path)
                    if not inside(target):
                        continue
                    st = stat(target)
                elif names_only:
                    # d_type from the directory read itself: no system call.
                    row = (name.decode(encoding, errors), entry.is_dir(), 0, 0.0, 0, None)
                    append(row)
                    if len(out) == cap:
                        break
                    continue
                else:
                    st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # dangling, looping, vanished or unreadable: omit
            mode = st.st_mode
            append(
                (
                    name.decode(encoding, errors),
                    isdir(mode),
                    st.st_size,
                    st.st_mtime,
                    mode & 0o7777,
                    f"{st.st_dev:x}g{st.st_ino:x}" if unique else None,
                )
            )
            if len(out) == cap:
                break
    return out
