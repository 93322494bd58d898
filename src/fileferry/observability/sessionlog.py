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

    def __call__(self, event: SessionEvent) -> None:
        logger = self._log
        if not event.logged or not logger.isEnabledFor(logging.INFO):
            return
        origin = event.origin
        extra = " ".join(f"{k}={v!r}" for k, v in event.log_fields())
        args = (origin.session, origin.peer, origin.user or "-", event.name, extra)
        record = logger.makeRecord(
            logger.name, logging.INFO, "(unknown file)", 0, _LINE, args, None
        )
        at = event.at
        record.relativeCreated += (at - record.created) * 1000
        record.created = at
        record.msecs = int((at - int(at)) * 1000) + 0.0
        record.session_event = event
        logger.handle(record)

    def __repr__(self) -> str:
        return f"SessionLog({self._log.name!r})"
