"""The server's log line format, made cheap enough to write per session event.

``fileferry serve`` logs every connect, login, transfer and disconnect. With
the standard :class:`logging.Formatter`, most of a line's cost is
``time.localtime`` and ``strftime`` for a date that changes once a second,
and the generic ``%``-style template walk. :class:`LineFormatter` produces
exactly the text of ``Formatter("%(asctime)s %(levelname)s %(name)s
%(message)s")`` (tests compare them) in about half the time (figures in
``bench/notes.md``): the date part is
computed once per second, and the line is one f-string. Records with an
exception or stack attached take the standard path, so tracebacks look as
usual.
"""

from __future__ import annotations

import logging
import time

__all__ = ["FORMAT", "LineFormatter"]

#: The template :class:`LineFormatter` reproduces.
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class LineFormatter(logging.Formatter):
    """``FORMAT`` with the date cached per second.

    ``node`` (``--node-name``, when given) goes after the date, where syslog
    puts the host, so that lines of several nodes merged in one place still
    say where they came from.
    """

    def __init__(self, node: str | None = None) -> None:
        super().__init__(FORMAT if node is None else FORMAT.replace(" ", f" {node} ", 1))
        self._node = "" if node is None else f"{node} "
        #: (whole second, its "YYYY-mm-dd HH:MM:SS"); one tuple, so a reader
        #: never sees a second paired with another second's text.
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached = self._second
        if cached[0] != second:
            text = time.strftime(self.default_time_format, self.converter(second))
            cached = self._second = (second, text)
        return f"{cached[1]},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        record.message = message = record.getMessage()
        record.asctime = stamp = self.formatTime(record)
        return f"{stamp} {self._node}{record.levelname} {record.name} {message}"
