"""Sweeping hidden upload files that nothing uses any more.

Every pending upload of the local backend is a hidden name beside its
target (``TEMP_PREFIX``): a temp file, an append's journal (``localappend``)
or, in resumable mode, a partial (``localpartial``). A process killed mid-
upload leaves them behind; nothing counts them, and they made RMD answer
"not empty" on a folder that lists empty. The server sweeps them at start
and periodically (``server/app.py``), and RMD clears them first.

**Liveness is a lock, not a guess.** An upload holds an ``flock`` on its file
(its temp file, its partial, or the target it appends to) for as long as it
runs, in whichever process; a lock dies with its process. The sweep takes
the lock before it deletes or rolls back anything, so a running upload is
never touched, however old. The ages (``temp_max_age``,
``partial_max_age``) are what the operator wants kept around on top: a
partial must live long enough to be resumed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from dataclasses import dataclass

from fileferry.storage.localappend import APPEND_TAG, recover
from fileferry.storage.localpartial import PARTIAL_TAG

__all__ = ["Swept", "clear_hidden", "sweep_tree"]

_OPEN = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY


@dataclass
class Swept:
    """What one sweep did, for the log."""

    removed: int = 0
    bytes: int = 0
    #: Dead appends undone (or, in resumable mode, kept) from their journals.
    journals: int = 0


def _remove_unlocked(path: bytes, older_than: float | None, swept: Swept) -> bool:
    """Delete ``path`` if no upload holds it (and it is old enough); False if kept."""
    try:
        fd = os.open(path, _OPEN)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if older_than is not None and st.st_mtime > older_than:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False  # a live upload
            raise
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        swept.removed += 1
        swept.bytes += st.st_size
        return True
    finally:
        os.close(fd)


def _handle(
    path: bytes,
    rest: bytes,
    swept: Swept,
    *,
    temp_before: float | None,
    partial_before: float | None,
    keep_partial: bool,
) -> bool:
    """Sweep one hidden name (``rest``: what follows the prefix); False if it stays."""
    if rest.startswith(APPEND_TAG):
        done = recover(path, keep_partial)
        swept.journals += done
        return done
    if rest.startswith(PARTIAL_TAG):
        return _remove_unlocked(path, partial_before, swept)
    return _remove_unlocked(path, temp_before, swept)


def sweep_tree(
    root: bytes,
    prefix: bytes,
    *,
    temp_max_age: float,
    partial_max_age: float,
    keep_partial: bool,
) -> Swept:
    """Sweep every hidden upload file under ``root`` (symlinks are not followed)."""
    now = time.time()
    swept = Swept()
    for parent, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(prefix):
                with contextlib.suppress(OSError):
                    _handle(
                        os.path.join(parent, name),
                        name[len(prefix) :],
                        swept,
                        temp_before=now - temp_max_age,
                        partial_before=now - partial_max_age,
                        keep_partial=keep_partial,
                    )
    return swept


def clear_hidden(directory: bytes, prefix: bytes, keep_partial: bool) -> bool:
    """Before RMD: clear the folder's hidden upload files; True if only they were there.

    Whatever its age, a file no upload holds goes (partials too: removing
    the folder is the user's call). Returns False, leaving the rest, if the
    folder holds a visible entry or an upload in progress.
    """
    with os.scandir(directory) as entries:
        names = [entry.name for entry in entries]
    if not all(name.startswith(prefix) for name in names):
        return False
    swept = Swept()
    for name in names:
        path = os.path.join(directory, name)
        rest = name[len(prefix) :]
        if rest.startswith(APPEND_TAG):
            # Undo a dead append first (its file is not in this folder's way,
            # it is the folder's visible content; here there is none left).
            if not recover(path, keep_partial):
                return False
            continue
        try:
            if not _remove_unlocked(path, None, swept):
                return False
        except OSError:
            return False  # e.g. a folder with such a name: not ours to clear
    return True
