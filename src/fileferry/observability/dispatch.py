"""Hand session events to observers, off the path that produced them.

A handler's ``emit`` only appends the event to a queue; the observers run in
a callback scheduled for after the current turn of the event loop, so the
replies and closes that turn produced go out first (when 300 clients QUIT at
once, the last would otherwise wait for 299 log lines). The queue is
bounded: past ``max_pending`` events are dropped and counted, so an observer
that cannot keep up costs events, never memory. Each callback delivers at
most ``batch`` events and schedules another for the rest, so a burst is
spread over several turns instead of holding the loop. An observer that
raises is logged and skipped; the others still get the event.

Observers are plain callables run on the event loop: they must be quick
(format a line, bump a counter). One that needs to block (a socket, a
database) should queue the event and do its work elsewhere. With several
workers every worker's server calls the same observer objects from its own
thread: an observer shared between workers must be thread-safe.

An observer may say which events it wants with an ``event_types`` attribute
(a collection of :class:`SessionEvent` subclasses; a base class covers its
subclasses). The dispatcher then routes each event type only to the
observers that asked for it, and an event nobody wants costs one dictionary
look-up in ``emit``: it is neither queued nor does it schedule a callback.
Emitters that would do work just to build an event can ask
:meth:`Dispatcher.wants` first. An observer without the attribute (or with
``None``) gets everything, as before.

*Detail* events (``SessionEvent.detail``: one per command, storage errors)
go only to observers with a true ``wants_detail`` attribute, and
:attr:`Dispatcher.detailed` tells the producers whether to build them at
all: without such an observer a command costs nothing more than before.
An observer that only *counts* commands (metrics) offers
``count_command(verb, reply_code)`` instead of taking ``CommandCompleted``
events: called inline, it costs a dictionary update where an event, its
queue and its delivery cost a quarter of a NOOP's CPU. (Such an observer
still receives ``CommandCompleted`` events when another one wants them, and
ignores them.)
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import Protocol

from fileferry.observability.events import SessionEvent

log = logging.getLogger("fileferry.observability")

#: Events waiting for delivery, at most; more are dropped (and counted).
MAX_PENDING = 100_000
#: Events delivered per loop callback.
BATCH = 512


class Observer(Protocol):
    """Anything called with each session event."""

    def __call__(self, event: SessionEvent, /) -> None: ...


class Dispatcher:
    """The observers of one server (one event loop), and their pending events."""

    def __init__(
        self,
        observers: Iterable[Observer] = (),
        *,
        max_pending: int = MAX_PENDING,
        batch: int = BATCH,
    ) -> None:
        self.observers: tuple[Observer, ...] = tuple(observers)
        #: Whether anyone listens: callers may skip building events when not.
        self.active = bool(self.observers)
        #: The observers that asked for detail events too.
        self.detail_observers: tuple[Observer, ...] = tuple(
            o for o in self.observers if getattr(o, "wants_detail", False)
        )
        #: Whether anyone wants detail events: if not, do not build them.
        self.detailed = bool(self.detail_observers)
        #: The fast path of observers that count commands (``count_command``).
        self.command_counters: tuple[Callable[[str, int], None], ...] = tuple(
            o.count_command for o in self.detail_observers if hasattr(o, "count_command")
        )
        #: Whether some detail observer wants a ``CommandCompleted`` event per command.
        self.command_events = any(not hasattr(o, "count_command") for o in self.detail_observers)
        #: Event type -> the observers that want it; filled on first sight.
        self._routes: dict[type, tuple[Observer, ...]] = {}
        self._max_pending = max_pending
        self._batch = batch
        self._pending: deque[SessionEvent] = deque()
        self._scheduled = False
        #: Events dropped because the queue was full.
        self.dropped = 0

    def add(self, observer: Observer) -> None:
        """One more observer, from now on (the web admin's counters, started later)."""
        self.observers = (*self.observers, observer)
        self.active = True

    def emit(self, event: SessionEvent) -> None:
        """Queue ``event`` for the observers that want it; never blocks, never raises."""
        if not self.active or (event.detail and not self.detailed):
            return
        kind = type(event)
        targets = self._routes.get(kind)
        if targets is None:
            targets = self._route(kind)
        if not targets:
            return  # nobody subscribed to this kind: nothing queued, nothing scheduled
        if len(self._pending) >= self._max_pending:
            if not self.dropped:
                log.warning("observers are behind: dropping session events")
            self.dropped += 1
            return
        self._pending.append(event)
        if self._scheduled:
            return
        try:
            asyncio.get_running_loop().call_soon(self._deliver)
        except RuntimeError:  # no running loop (shutting down): deliver now, lose nothing
            self._deliver()
            return
        self._scheduled = True

    def wants(self, kind: type[SessionEvent]) -> bool:
        """Whether any observer takes events of ``kind`` (skip building one if not)."""
        if not self.active:
            return False
        targets = self._routes.get(kind)
        if targets is None:
            targets = self._route(kind)
        return bool(targets)

    def _route(self, kind: type) -> tuple[Observer, ...]:
        # A detail event type goes only to the observers that asked for details.
        candidates = self.detail_observers if getattr(kind, "detail", False) else self.observers
        targets = tuple(o for o in candidates if _subscribes(o, kind))
        self._routes[kind] = targets
        return targets

    def flush(self) -> None:
        """Deliver everything pending now (at shutdown, or for a test)."""
        while self._pending:
            self._deliver_some(len(self._pending))

    def _deliver(self) -> None:
        self._scheduled = False
        self._deliver_some(self._batch)
        if self._pending:
            try:
                asyncio.get_running_loop().call_soon(self._deliver)
            except RuntimeError:
                self.flush()
                return
            self._scheduled = True

    def _deliver_some(self, count: int) -> None:
        pending = self._pending
        observers = self.observers
        routes = self._routes
        for _ in range(min(count, len(pending))):
            event = pending.popleft()
            for observer in routes.get(type(event), observers):
                try:
                    observer(event)
                except Exception:
                    log.exception("observer %r failed on %s; skipped", observer, event.name)


def _subscribes(observer: Observer, kind: type) -> bool:
    """Whether ``observer`` takes events of ``kind`` (no ``event_types``: all of them)."""
    wanted: Collection[type] | None = getattr(observer, "event_types", None)
    if wanted is None:
        return True
    return any(issubclass(kind, base) for base in wanted)
