"""Resumable uploads on local disk: an interrupted STOR keeps what it received.

Opt-in (``resumable_uploads``). Without it an interrupted upload is thrown
away, as an atomic STOR should be. With it, a ``STOR name`` writes to a
hidden *partial* beside the target, ``TEMP_PREFIX`` + ``partial-`` + a hash
of the name: one per folder and file name, so the next upload of that name
finds it. The rules, chosen for what clients do to resume:

* **Never visible early.** The partial is renamed over the target only when
  an upload of it ends cleanly (226); until then LIST, RETR and MDTM show the
  old file (or none), and an interrupted upload (426, ``kill -9``) leaves the
  target as it was.
* **Finding the offset: SIZE.** ``curl -C -`` sends ``SIZE name`` and then
  ``APPE name`` from that offset; lftp's ``put -c`` and ftplib users send
  ``SIZE``, then ``REST n`` + ``STOR``. So while a partial of ``name`` exists,
  ``SIZE name`` answers the partial's size (:func:`partial_size`), and
* **continuing:** ``APPE name`` appends to the partial, as does ``REST n`` +
  ``STOR name`` when ``n`` is exactly the partial's size. Any other ``REST``
  acts on the target as usual; a plain ``STOR name`` starts the partial over.
* **One writer.** The partial is ``flock``-ed while an upload writes it; a
  second upload of the same name meanwhile gets 450.
* **Who may resume.** Whoever may write ``name`` in that folder: the partial
  belongs to the folder and name, not to a session (a user sharing a home
  with another shares its partials, as they share its files).
* **Quota.** A kept partial stays charged to the account (its bytes, not a
  file) until it is committed, started over, or swept.
* **Sweeping.** Partials older than ``temp_max_age`` (by their last write)
  are deleted by the sweep (``localsweep``), like crash leftovers.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat as stat_mod

from fileferry.storage.localappend import FileBusy

__all__ = ["PARTIAL_TAG", "kept_in", "open_partial", "partial_for", "partial_size"]

#: After ``TEMP_PREFIX``: a kept, resumable upload.
PARTIAL_TAG = b"partial-"
_OPEN = os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY


def partial_for(parent: bytes, name: bytes, prefix: bytes) -> bytes:
    """Where an interrupted upload to ``parent/name`` is kept."""
    digest = hashlib.sha256(name).hexdigest()[:32].encode()
    return os.path.join(parent, prefix + PARTIAL_TAG + digest)


def partial_size(target: bytes, prefix: bytes) -> int | None:
    """Bytes kept of an interrupted upload to ``target``, or ``None`` if there is none."""
    parent, name = os.path.split(target)
    try:
        st = os.lstat(partial_for(parent, name, prefix))
    except FileNotFoundError:
        return None
    return st.st_size if stat_mod.S_ISREG(st.st_mode) else None


def kept_in(directory: bytes, prefix: bytes) -> int:
    """Bytes of the partials kept in ``directory`` (for a quota's measure)."""
    start = prefix + PARTIAL_TAG
    total = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(start):
                with contextlib.suppress(OSError):
                    total += entry.stat(follow_symlinks=False).st_size
    return total


def _lock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise FileBusy() from None
        raise


def _same(fd: int, path: bytes) -> bool:
    """Whether ``path`` still names ``fd``'s file (a commit may have renamed it away)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def open_partial(
    target: bytes, keep: int, prefix: bytes, mode: int | None
) -> tuple[int, bytes, int, int] | None:
    """Open the partial of ``target`` for an upload: ``(fd, path, size, charged)``.

    ``keep`` is 0 for a STOR (the partial is created or started over),
    -1 for an APPE and ``n`` for ``REST n`` (both continue an existing
    partial; ``REST n`` only one of exactly ``n`` bytes). ``size`` is where
    writing starts; ``charged`` the bytes the partial held when opened (kept
    by an earlier upload, so already counted). ``None``: no partial applies,
    the upload goes to the target as usual. Raises ``FileBusy``.
    """
    parent, name = os.path.split(target)
    path = partial_for(parent, name, prefix)
    flags = _OPEN if keep else _OPEN | os.O_CREAT
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:
        return None
    try:
        _lock(fd)
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode) or not _same(fd, path):
            # Not a file, or committed (renamed onto its target) just now.
            if keep:
                os.close(fd)
                return None
            raise FileBusy()
        charged = st.st_size
        if keep > 0 and keep != st.st_size:
            os.close(fd)
            return None
        if not keep:
            os.ftruncate(fd, 0)
            if mode is not None:
                os.fchmod(fd, mode)
        os.set_blocking(fd, True)
        start = os.lseek(fd, 0, os.SEEK_END)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd, path, start, charged
