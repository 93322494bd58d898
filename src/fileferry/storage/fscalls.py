"""Where a local storage runs its short file-system calls: on the loop or in a thread.

A thread hop (``run_in_executor``) costs two cross-thread wake-ups, ten times
what ``open``, ``stat`` or ``rename`` of a page-cached directory on a local
disk take (figures in ``bench/notes.md``). With one client moving many small
files, those hops were most of the time a file took (benchmark row h). So the
short metadata calls of a local disk run inline on the event loop, as the
zero-copy data paths (``sendfile``, ``splice`` into the file) already do.

What stays in the pool whatever the policy: anything whose cost grows with
the data (directory scans, chunked reads and writes, copying a prefix for
REST/APPE, ``fsync``). And a file system that can hang (NFS, SMB, FUSE, 9p,
Ceph...) gets every call in the pool: a blocked ``open`` there must stall one
worker thread, not every session.

``auto`` decides from the mount the root lives on (``/proc/self/mountinfo``);
if an inline call is slow anyway (a failing disk, an unrecognised network
mount), the storage logs it and uses the pool for the next minute: one slow
call a minute is the most the loop pays.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

log = logging.getLogger("fileferry.storage")

_T = TypeVar("_T")

#: An inline call slower than this moves the storage to the thread pool...
SLOW_CALL = 0.05
#: ...for this long (then inline calls are tried again).
SLOW_PAUSE = 60.0

#: File system types whose calls may block for long (network, userspace, cluster).
_REMOTE_TYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "ceph",
        "glusterfs",
        "afs",
        "lustre",
        "gpfs",
        "beegfs",
        "ocfs2",
        "gfs2",
        "sshfs",
        "davfs",
        "virtiofs",
    }
)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_type(path: str, mountinfo: str | None = None) -> str | None:
    """The file system type of the mount holding ``path`` (a resolved path), if known."""
    if mountinfo is None:
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
                mountinfo = f.read()
        except OSError:
            return None
    best, best_type = -1, None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        after = right.split()
        if not sep or len(fields) < 5 or not after:
            continue
        point = _unescape(fields[4])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, best_type = len(point), after[0]
    return best_type


def is_remote(fstype: str | None) -> bool:
    """Whether calls on this file system type may hang (unknown counts as local)."""
    if fstype is None:
        return False
    return fstype in _REMOTE_TYPES or fstype.startswith("fuse")


def inline_for(root: bytes, policy: str) -> bool:
    """Whether metadata calls under ``root`` run inline, for a policy of ``fs_calls``."""
    if policy == "inline":
        return True
    if policy == "thread":
        return False
    fstype = mount_type(os.fsdecode(root))
    inline = not is_remote(fstype)
    where = "inline" if inline else "in the pool"
    log.debug("storage %s on %s: metadata calls %s", os.fsdecode(root), fstype, where)
    return inline


class Calls:
    """Runs short file-system calls inline or in ``executor``, per the policy above."""

    def __init__(self, executor: Executor, inline: bool, where: str) -> None:
        self.executor = executor
        self._inline = inline
        self._where = where
        #: After a slow inline call: ``time.monotonic()`` until which calls are pooled.
        self._pooled_until = 0.0

    @property
    def inline(self) -> bool:
        """Whether the next short call runs on the caller's thread."""
        if not self._inline:
            return False
        return self._pooled_until == 0.0 or time.monotonic() >= self._pooled_until

    def call(self, fn: Callable[..., _T], *args: object) -> _T:
        """Inline: run now, timed; a slow call sends the next minute's calls to the pool."""
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            spent = time.perf_counter() - start
            if spent > SLOW_CALL:
                self._pooled_until = time.monotonic() + SLOW_PAUSE
                log.warning(
                    "a file-system call under %s took %.0f ms on the event loop; "
                    "using the thread pool for it for %.0f s",
                    self._where,
                    spent * 1000,
                    SLOW_PAUSE,
                )
