"""``--xferlog FILE``: one line per finished file transfer, as wu-ftpd and vsftpd write it.

Log analysers (webalizer, AWStats, xferstats, fail2ban filters) read this
format, so the layout follows vsftpd's ``xferlog_std_format`` field for
field::

    Thu Dec  3 12:36:30 2026 1 127.0.0.1 1048576 /in/report_2026.csv b _ i r bob ftp 0 * c

current-time (UTC, ``ctime`` style, as vsftpd writes by default),
transfer-time (whole seconds, at least 1), remote-host, bytes, filename,
type (``a`` ASCII / ``b`` binary), special-action ``_``, direction (``o``
download / ``i`` upload), access-mode (``a`` anonymous / ``r`` real),
username, service ``ftp``, authentication-method ``0``, authenticated-user-id
``*`` and completion (``c`` complete, ``i`` incomplete: any final reply but
226, the transfer's bytes so far).

Choices where servers differ, and why:

* **Spaces in file names become underscores**, as vsftpd does (ProFTPD
  does the same for control characters, which fileferry's path jail never
  lets into a name anyway). Every field then stays one whitespace-separated
  token, which is what the analysers split on; the price is that
  ``a b.txt`` and ``a_b.txt`` log alike.
* The file name is the **virtual path** the client saw (rooted at its
  home), as vsftpd logs it in a chroot; raw bytes of a non-UTF-8 name are
  written as they are.
* The username of an anonymous login is the account name: wu-ftpd and
  vsftpd log the e-mail address given as the anonymous *password*, and no
  password, even that one, goes into a log.
* Listings (LIST, NLST, MLSD) are not file transfers and are not logged.

Each line is one ``write`` on a descriptor opened with ``O_APPEND``, so the
lines of several worker processes never interleave. SIGHUP reopens the file
(:meth:`XferLog.reopen`): logrotate renames it, signals, and the next line
goes to a new file with the old name.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from fileferry.observability.events import LoginSucceeded, SessionEvent, TransferFinished

log = logging.getLogger("fileferry.xferlog")

#: The verbs whose transfers are files (not listings).
FILE_TRANSFERS = frozenset({"RETR", "STOR", "APPE", "STOU"})
_MODE = 0o640


def xferlog_line(event: TransferFinished, *, anonymous: bool = False) -> str:
    """The xferlog line of one finished transfer, newline included."""
    when = time.asctime(time.gmtime(event.at))  # "Thu Dec  3 12:36:30 2026"
    seconds = max(1, round(event.seconds))
    name = event.path.replace(" ", "_")
    kind = "a" if event.ascii else "b"
    direction = "i" if event.direction == "upload" else "o"
    access = "a" if anonymous else "r"
    user = (event.origin.user or "-").replace(" ", "_")
    done = "c" if event.reply_code == 226 else "i"
    return (
        f"{when} {seconds} {event.origin.peer} {event.bytes} {name} {kind} _ {direction} "
        f"{access} {user} ftp 0 * {done}\n"
    )


class XferLog:
    """The observer that appends each finished file transfer to the xferlog."""

    def __init__(self, path: str, anonymous_users: frozenset[str] = frozenset()) -> None:
        self.path = path
        #: Account names that are anonymous logins (access mode ``a``).
        self._anonymous = set(anonymous_users)
        self._lock = threading.Lock()  # reopen may come from another thread
        self._failing = False
        self._fd = self._open()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, _MODE)

    def __call__(self, event: SessionEvent) -> None:
        if type(event) is not TransferFinished:
            if type(event) is LoginSucceeded and event.anonymous and event.origin.user:
                self._anonymous.add(event.origin.user)
            return
        if event.command not in FILE_TRANSFERS:
            return
        line = xferlog_line(event, anonymous=event.origin.user in self._anonymous)
        data = line.encode("utf-8", "surrogateescape")
        with self._lock:
            try:
                os.write(self._fd, data)
            except OSError as exc:
                # Once per outage (a full disk), not once per transfer.
                if not self._failing:
                    log.warning("cannot write the xferlog %s: %s", self.path, exc.strerror)
                self._failing = True
            else:
                self._failing = False

    def reopen(self) -> None:
        """After a rotation (SIGHUP): lines go to a file under the configured name."""
        try:
            fd = self._open()
        except OSError as exc:
            log.error("cannot reopen the xferlog %s: %s", self.path, exc.strerror)
            return
        with self._lock:
            old, self._fd = self._fd, fd
        if old >= 0:
            os.close(old)
        log.info("xferlog %s reopened", self.path)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __repr__(self) -> str:
        return f"XferLog({self.path!r})"
