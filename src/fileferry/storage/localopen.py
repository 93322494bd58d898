"""Opening an upload on local disk: which file its bytes go to, decided in one place.

Split from ``local.py`` (paths, jail, the ``Storage`` calls). Runs in a
worker thread (or inline, for a fresh STOR on a local disk), on a target
path the caller has already jailed. In order:

1. **Resumable mode** (not STOU): the hidden partial of the target, when one
   applies (``localpartial``): a fresh STOR starts it, APPE or ``REST n``
   continue it.
2. **APPE, or REST at the file's end**: the target itself, in place, locked
   and journalled (``localappend``): O(appended bytes).
3. **Otherwise** a fresh temp file beside the target, renamed over it on
   commit; REST below the end seeds it with the kept prefix (a copy, which
   the quota charges: ``Upload.pending_copy``).
"""

from __future__ import annotations

import fcntl
import os
import stat as stat_mod

from fileferry.errors import (
    InvalidName,
    InvalidOffset,
    IsADirectory,
    PermissionDenied,
    StorageUnavailable,
)
from fileferry.storage.localappend import open_in_place
from fileferry.storage.localfiles import (
    APPEND,
    PARTIAL,
    TEMP,
    TEMP_PREFIX_B,
    Opened,
    copy_prefix,
    discard,
)
from fileferry.storage.localpartial import open_partial

__all__ = ["create_temp", "open_upload"]

READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


def open_upload(
    target: bytes, keep: int, exclusive: bool, *, root: bytes, resumable: bool, fsync: bool
) -> Opened:
    """Open the file an upload to ``target`` writes (``keep``: -1 APPE, n REST n, 0 STOR)."""
    if target == root:
        raise IsADirectory()
    if os.path.basename(target).startswith(TEMP_PREFIX_B):
        raise InvalidName()
    if resumable and not exclusive:
        try:
            st = os.stat(target)
        except FileNotFoundError:
            st = None
        if st is None or stat_mod.S_ISREG(st.st_mode):
            mode = stat_mod.S_IMODE(st.st_mode) & 0o777 if st is not None else None
            found = open_partial(target, keep, TEMP_PREFIX_B, mode)
            if found is not None:
                fd, partial, size, charged = found
                replaces = st.st_size if st is not None else 0
                return fd, partial, target, size, replaces, PARTIAL, charged
    return _open_target(target, keep, resumable=resumable, fsync=fsync)


def _open_target(target: bytes, keep: int, *, resumable: bool, fsync: bool) -> Opened:
    """Append to the target in place, or create the temp file, seeded with
    ``keep`` bytes of the target (-1: all)."""
    parent = os.path.dirname(target)
    src = -1
    try:
        if keep:
            try:
                src = os.open(target, READ_FLAGS)
            except FileNotFoundError:
                src = -1
            st = os.fstat(src) if src >= 0 else None
        else:
            try:
                st = os.stat(target)
            except FileNotFoundError:
                st = None
        if st is not None and stat_mod.S_ISDIR(st.st_mode):
            raise IsADirectory()
        if st is not None and not stat_mod.S_ISREG(st.st_mode):
            raise PermissionDenied()
        if keep > 0 and (st is None or keep > st.st_size):
            if st is None:
                os.stat(parent)  # a missing parent is NotFound, not a bad offset
            raise InvalidOffset()
        if st is not None and keep and (keep < 0 or keep == st.st_size):
            placed = open_in_place(target, keep, TEMP_PREFIX_B, keep_partial=resumable, fsync=fsync)
            if placed is not None:
                fd, marker, base = placed
                return fd, marker, target, base, 0, APPEND, 0
        fd, tmp = create_temp(parent)
        try:
            if st is not None:
                # Overwriting must not widen access to a file kept private.
                os.fchmod(fd, stat_mod.S_IMODE(st.st_mode) & 0o777)
            size = 0
            if src >= 0:
                os.set_blocking(src, True)
                want = st.st_size if keep < 0 and st is not None else keep
                size = copy_prefix(src, fd, want)
                if keep > 0 and size < keep:
                    raise InvalidOffset()  # the file shrank under us
        except BaseException:
            discard(fd, tmp)
            raise
    finally:
        if src >= 0:
            os.close(src)
    return fd, tmp, target, size, st.st_size if st is not None else 0, TEMP, 0


def create_temp(parent: bytes) -> tuple[int, bytes]:
    """A new hidden temp file in ``parent``, locked (see ``localsweep``)."""
    for _ in range(16):
        tmp = os.path.join(parent, TEMP_PREFIX_B + os.urandom(8).hex().encode())
        try:
            fd = os.open(tmp, _TEMP_FLAGS, 0o644)
        except FileExistsError:
            continue
        # Locked while in use, so that a sweep can tell a live upload from a
        # crash's leftover, whatever its age. The lock dies with the process.
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # a sweep got it first (and removes it): take another name
            continue
        return fd, tmp
    raise StorageUnavailable()
