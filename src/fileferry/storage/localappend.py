"""Appends and resumes in place on local disk: O(appended bytes), undone when they fail.

Why not the temp file every other upload uses: seeding it with the old
content costs the whole file per APPE or ``REST <size>`` + ``STOR``. A
client that uploads in blocks (fsspec sends each 5 MiB block as ``REST n``
+ ``STOR``) then goes quadratic, and each idle append held a full copy on
disk that no quota saw. vsftpd and pure-ftpd append in place; so do we,
while keeping what the temp file gave: an append that does not finish
leaves the file as it was.

* **One appender per file.** The target is opened and ``flock``-ed
  (``LOCK_EX | LOCK_NB``) for the whole upload; a second APPE or resume of
  the same file, from this process or another worker, is refused with 450
  rather than interleaved. The lock dies with its process.
* **A journal beside the file.** Before the first byte, a hidden marker
  (``TEMP_PREFIX`` + ``append-`` + a hash of the name) records the file's
  device, inode and size. Commit deletes it; abort truncates the file back
  to that size, then deletes it. After ``kill -9`` the marker outlives its
  writer: the next appender of the file (which holds the lock, so the writer
  is gone) or the sweep (``localsweep``, which takes the lock first) rolls
  the file back. In resumable mode the received bytes are kept instead and
  the marker is just removed: the client resumes from the file's size.
* **What readers see.** A download that starts during an append reads the
  file as it grows (the size announced in its 150 is the size at open; a
  ``sendfile`` stops there, a read loop goes on to the end it finds). If the
  append then fails, the bytes it added are truncated away. This is what
  vsftpd and pure-ftpd do; a whole new version of a file is still published
  atomically by a plain ``STOR`` (temp file + rename).
* **REST below the end** (the tail must be replaced) still takes the copy, so
  that an abort cannot lose the tail; the quota charges that copy at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat as stat_mod

from fileferry.errors import InvalidOffset, StorageUnavailable

__all__ = ["FileBusy", "marker_for", "open_in_place", "recover", "roll_back"]

#: After ``TEMP_PREFIX``: the journal of an in-place append.
APPEND_TAG = b"append-"
_MARKER_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
_TARGET_FLAGS = os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
#: A marker is a few numbers and a file name: anything bigger is not ours.
_MARKER_MAX = 4096


class FileBusy(StorageUnavailable):
    """Another upload is appending to this file right now (try again later)."""

    reply_code = 450
    reply_text = "File busy: another upload is writing to it."


def marker_for(parent: bytes, name: bytes, prefix: bytes) -> bytes:
    """The journal path of in-place appends to ``parent/name``: one per file, by name."""
    digest = hashlib.sha256(name).hexdigest()[:32].encode()
    return os.path.join(parent, prefix + APPEND_TAG + digest)


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


def _read_marker(path: bytes) -> tuple[int, int, int, bytes] | None:
    """``(dev, ino, size, name)`` from a marker, or ``None`` if it is unreadable or not ours."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        raw = os.read(fd, _MARKER_MAX)
    except OSError:
        return None
    finally:
        os.close(fd)
    head, sep, name = raw.partition(b"\n")
    fields = head.split()
    if not sep or len(fields) != 3 or not all(f.isdigit() for f in fields):
        return None
    dev, ino, size = (int(f) for f in fields)
    return dev, ino, size, name


def roll_back(fd: int, marker: bytes, size: int, keep: bool) -> None:
    """Undo an append to the locked file ``fd`` (unless ``keep``), then drop its marker."""
    if not keep and os.fstat(fd).st_size > size:
        os.ftruncate(fd, size)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(marker)


def _recover_locked(fd: int, marker: bytes, keep: bool) -> None:
    """With ``fd`` (the target) locked: finish a dead appender's journal, if there is one."""
    found = _read_marker(marker)
    if found is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(marker)
        return
    dev, ino, size, _name = found
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) == (dev, ino):
        roll_back(fd, marker, size, keep)
    else:  # the file was replaced since: the journal is about a file that is gone
        os.unlink(marker)


def open_in_place(
    target: bytes, keep: int, prefix: bytes, *, keep_partial: bool, fsync: bool
) -> tuple[int, bytes, int] | None:
    """Open ``target`` to append at ``keep`` (-1: its end): ``(fd, marker, size)``.

    ``None`` when the append cannot be made in place (``keep`` is below the
    end, or the file is not writable as it is): the caller then copies.
    Raises ``FileBusy`` when another upload holds the file, ``InvalidOffset``
    when ``keep`` is past its end, ``OSError`` otherwise.
    """
    try:
        fd = os.open(target, _TARGET_FLAGS)
    except PermissionError:
        return None  # e.g. mode 0444 in a writable folder: replacing it still works
    try:
        if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None  # the caller's checks give the right error
        if not _lock(fd):
            raise FileBusy()
        parent, name = os.path.split(target)
        marker = marker_for(parent, name, prefix)
        _recover_locked(fd, marker, keep_partial)
        st = os.fstat(fd)
        if keep > st.st_size:
            raise InvalidOffset()
        if 0 <= keep < st.st_size:
            os.close(fd)
            return None
        os.set_blocking(fd, True)
        _write_marker(marker, st, name, fsync)
        os.lseek(fd, st.st_size, os.SEEK_SET)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd, marker, st.st_size


def _write_marker(marker: bytes, st: os.stat_result, name: bytes, fsync: bool) -> None:
    mfd = os.open(marker, _MARKER_FLAGS, 0o600)
    try:
        os.write(mfd, b"%d %d %d\n%s" % (st.st_dev, st.st_ino, st.st_size, name))
        if fsync:
            os.fsync(mfd)
    finally:
        os.close(mfd)


def recover(marker: bytes, keep_partial: bool) -> bool:
    """Roll back (or, ``keep_partial``, keep) a dead appender's work; False if it is alive.

    The sweep's half of the journal: the marker names its file; the file's
    lock tells a live appender (skip it) from a dead one (undo its bytes).
    """
    found = _read_marker(marker)
    if found is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(marker)
        return True
    name = found[3]
    parent = os.path.dirname(marker)
    if os.sep.encode() in name or name in (b"", b".", b".."):
        os.unlink(marker)  # not a name we wrote
        return True
    try:
        fd = os.open(os.path.join(parent, name), _TARGET_FLAGS)
    except FileNotFoundError:
        os.unlink(marker)  # the file is gone: nothing to undo
        return True
    try:
        if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
            os.unlink(marker)
            return True
        if not _lock(fd):
            return False
        _recover_locked(fd, marker, keep_partial)
    finally:
        os.close(fd)
    return True
