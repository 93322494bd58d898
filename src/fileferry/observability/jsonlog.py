"""``--log-format json``: every log record as one JSON object on one line.

Log shippers (Vector, Fluent Bit, Loki's promtail) and ``jq`` take one object
per line without a parsing rule that breaks on the next format change. Each
object has the same leading keys::

    {"ts": "2026-12-03T12:36:30.123Z", "level": "info", "event": "transfer",
     "session": 3, "peer": "127.0.0.1", "user": "bob", "node": "ftp-1",
     "command": "RETR", "path": "/a", "direction": "download", "bytes": 1000, ...}

``ts`` is RFC 3339 in UTC (the moment the event happened, not when it was
written); ``event`` is the session event's stable short name, or ``"log"``
for the server's other records, which carry ``logger`` and ``message`` (and
``exception``, a traceback) instead of event fields; ``session``, ``peer`` and
``user`` are ``null`` outside a session. The event's own fields follow under
their dataclass names with their types (numbers stay numbers).

No secret can reach a line through this formatter that the text format
would not show: events carry no passwords by construction (``Authenticate``
is never an observer event, and its ``repr`` hides the password).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time

from fileferry.observability.events import SessionEvent

__all__ = ["JsonFormatter", "event_fields"]

#: The attribute of a log record that holds the session event it reports
#: (set by :class:`~fileferry.observability.sessionlog.SessionLog`).
EVENT_ATTRIBUTE = "session_event"

_COMPACT = (",", ":")
_SKIPPED = frozenset({"origin", "at"})
_FIELDS: dict[type, tuple[str, ...]] = {}


def event_fields(event: SessionEvent) -> list[tuple[str, object]]:
    """The event's own fields with JSON-ready values (tuples become lists)."""
    kind = type(event)
    names = _FIELDS.get(kind)
    if names is None:
        names = _FIELDS[kind] = tuple(
            f.name for f in dataclasses.fields(event) if f.name not in _SKIPPED
        )
    pairs: list[tuple[str, object]] = []
    for name in names:
        value = getattr(event, name)
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, float):
            value = round(value, 6)
        pairs.append((name, value))
    return pairs


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``node`` names this server in every line."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node
        #: (whole second, its "YYYY-mm-ddTHH:MM:SS"), as in LineFormatter.
        self._second: tuple[int, str] = (-1, "")

    def timestamp(self, created: float) -> str:
        second = int(created)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (
                second,
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)),
            )
        millis = int((created - second) * 1000)
        return f"{cached[1]}.{millis:03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": self.timestamp(record.created),
            "level": record.levelname.lower(),
        }
        event: SessionEvent | None = getattr(record, EVENT_ATTRIBUTE, None)
        if event is not None:
            origin = event.origin
            line["event"] = event.name
            line["session"] = origin.session
            line["peer"] = origin.peer
            line["user"] = origin.user
            line["node"] = self.node
            line.update(event_fields(event))
        else:
            line["event"] = "log"
            line["session"] = line["peer"] = line["user"] = None
            line["node"] = self.node
            line["logger"] = record.name
            line["message"] = record.getMessage()
            if record.exc_info:
                line["exception"] = self.formatException(record.exc_info)
            elif record.exc_text:
                line["exception"] = record.exc_text
            if record.stack_info:
                line["stack"] = self.formatStack(record.stack_info)
        text = json.dumps(line, ensure_ascii=False, separators=_COMPACT, default=str)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A file name with raw bytes (surrogate escapes): \\u escapes
            # keep the line valid JSON and valid UTF-8.
            text = json.dumps(line, ensure_ascii=True, separators=_COMPACT, default=str)
        return text
