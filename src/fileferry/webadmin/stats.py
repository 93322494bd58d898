"""Logins, failures and bytes per minute over the last hour: an event observer.

It only adds to the current minute's counters (a dict lookup and a few
integer adds per event), so it can sit beside the session log; the chart
and the "last hour" figures are read from it when a page asks.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from fileferry.observability import events as seen

#: Minutes kept: the dashboard's hour.
MINUTES = 60


@dataclass(slots=True)
class Minute:
    start: int
    logins: int = 0
    failures: int = 0
    up: int = 0
    down: int = 0


class Stats:
    """Per-minute counters of one server; call it with each session event."""

    def __init__(self) -> None:
        self._minutes: deque[Minute] = deque(maxlen=MINUTES)

    def _minute(self, at: float) -> Minute:
        start = int(at // 60) * 60
        minutes = self._minutes
        if not minutes or minutes[-1].start < start:
            minutes.append(Minute(start))
        elif minutes[-1].start > start:  # a late event from a past minute: keep it there
            for minute in reversed(minutes):
                if minute.start <= start:
                    return minute
        return minutes[-1]

    def __call__(self, event: seen.SessionEvent, /) -> None:
        kind = type(event)
        if kind is seen.TransferFinished:
            assert isinstance(event, seen.TransferFinished)
            if event.command in ("LIST", "NLST", "MLSD"):
                return
            minute = self._minute(event.at)
            if event.direction == "upload":
                minute.up += event.bytes
            else:
                minute.down += event.bytes
        elif kind is seen.LoginSucceeded:
            self._minute(event.at).logins += 1
        elif kind is seen.LoginFailed:
            self._minute(event.at).failures += 1

    def admin_failure(self) -> None:
        """A failed login to the web admin counts with the FTP ones."""
        self._minute(time.time()).failures += 1

    def hour(self, now: float | None = None) -> list[Minute]:
        """The last :data:`MINUTES` minutes, oldest first, empty ones included."""
        now = time.time() if now is None else now
        last = int(now // 60) * 60
        kept = {m.start: m for m in self._minutes}
        return [
            kept.get(start, Minute(start))
            for start in range(last - 60 * (MINUTES - 1), last + 60, 60)
        ]
