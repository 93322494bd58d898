"""The session log as an observer: the ``fileferry.session`` lines, unchanged.

Each event becomes one INFO record on the ``fileferry.session`` logger::

    session=3 peer=127.0.0.1 user=bob transfer cmd='RETR' path='/a' bytes=1000 secs=0.002 result=226

The record is stamped with the time the event happened (``event.at``), not
the time it was written, which the dispatcher defers past the loop's turn,
and it carries the event itself (``record.session_event``), from which
``--log-format json`` writes typed fields rather than this text.
"""

from __future__ import annotations

import logging

from fileferry.observability.events import SessionEvent

log = logging.getLogger("fileferry.session")

_LINE = "session=%d peer=%s user=%s %s %s"


class SessionLog:
    """Write each session event as a line of the ``fileferry.session`` log."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._log = logger
        #: The attributes every record of this log shares, taken from one
        #: record made the standard way (so they match this Python's
        #: ``LogRecord``), and when its clock starts (for ``relativeCreated``).
        blank = logger.makeRecord(logger.name, logging.INFO, _FILE, 0, _LINE, (), None)
        self._template = dict(blank.__dict__)
        self._start = blank.created - blank.relativeCreated / 1000

    def __call__(self, event: SessionEvent) -> None:
        logger = self._log
        if not event.logged or not logger.isEnabledFor(logging.INFO):
            return
        origin = event.origin
        fields = event.log_fields()
        extra = " ".join(f"{k}={v!r}" for k, v in fields) if fields else ""
        args = (origin.session, origin.peer, origin.user or "-", event.name, extra)
        at = event.at
        if _standard_records():
            # Three of these per login: the record is the template's
            # attributes plus this event's, where ``LogRecord.__init__``
            # would work out a file name, a module and a level name again.
            record = _new_record(logging.LogRecord)
            record.__dict__ = {
                **self._template,
                "args": args,
                "created": at,
                "msecs": int((at - int(at)) * 1000) + 0.0,
                "relativeCreated": (at - self._start) * 1000,
                "session_event": event,
            }
        else:
            record = logger.makeRecord(logger.name, logging.INFO, _FILE, 0, _LINE, args, None)
            record.relativeCreated += (at - record.created) * 1000
            record.created = at
            record.msecs = int((at - int(at)) * 1000) + 0.0
            record.session_event = event
        logger.handle(record)

    def __repr__(self) -> str:
        return f"SessionLog({self._log.name!r})"


_FILE = "(unknown file)"
_new_record = object.__new__


def _standard_records() -> bool:
    """Whether a record is all template: the standard factory, and none of the
    per-record facts (thread, process, task) that logging may be told to add."""
    return (
        logging.getLogRecordFactory() is logging.LogRecord
        and not logging.logThreads
        and not logging.logProcesses
        and not logging.logMultiprocessing
        and not getattr(logging, "logAsyncioTasks", False)
    )
