"""The two uploads that write where they will stay: in-place appends and partials.

Split from ``localfiles`` (which holds the plain temp-file upload they
derive from). Both may keep what they received when aborted in resumable
mode, and then say how much in ``abort_change`` for the quota.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from fileferry.errors import NotFound
from fileferry.storage.localappend import roll_back
from fileferry.storage.localfiles import LocalUpload, Opened, _fsync_dir, _write_all, discard

if TYPE_CHECKING:
    from fileferry.storage.local import LocalStorage

__all__ = ["InPlaceUpload", "PartialUpload"]


class InPlaceUpload(LocalUpload):
    """An append written straight into the locked target (see ``localappend``).

    ``_tmp`` is the append's journal; ``_base`` the size to truncate back to.
    Commit drops the journal, abort truncates (or, in resumable mode, keeps
    what was received) and drops it; closing the descriptor unlocks the file.
    """

    def __init__(
        self, storage: LocalStorage, opened: Opened, name: str, keep_partial: bool
    ) -> None:
        super().__init__(storage, opened, name, exclusive=False)
        self.in_place_base = self._base = opened[3]
        self._keep_partial = keep_partial

    def _keeps(self) -> bool:
        return self._keep_partial and not self._failed

    def _commit_sync(self, chunk: bytearray) -> os.stat_result:
        fd = self._fd
        try:
            _write_all(fd, chunk)
            if self._storage._fsync_uploads:
                os.fsync(fd)
            st = os.fstat(fd)
            try:
                now = os.stat(self._target)
            except FileNotFoundError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                # Deleted or replaced meanwhile: these bytes went to a file nobody sees.
                raise NotFound("The file was removed or replaced during the upload.")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            if self._storage._fsync_uploads:
                _fsync_dir(os.path.dirname(self._target))
        except BaseException:
            self._discard_sync(fd)
            self._fd = -1
            raise
        self._fd = -1
        os.close(fd)
        return st

    def _discard_sync(self, fd: int) -> None:
        if fd < 0:
            return
        try:
            keep = self._keeps()
            if keep:
                self.abort_change = self._keep_sync(fd) - self._base
            roll_back(fd, self._tmp, self._base, keep)
        finally:
            os.close(fd)


class PartialUpload(LocalUpload):
    """An upload into a resumable partial (see ``localpartial``).

    Commit renames it over the target like any temp file; abort keeps it
    (unless a write failed, which may have left a hole) and reports its size
    change for the quota. Closing the descriptor unlocks it.
    """

    def _keeps(self) -> bool:
        return not self._failed

    def _discard_sync(self, fd: int) -> None:
        if fd < 0:
            return
        if not self._keeps():
            self.abort_change = -self.charged_before
            discard(fd, self._tmp)
            return
        try:
            self.abort_change = self._keep_sync(fd) - self.charged_before
        finally:
            os.close(fd)
