"""The dispatcher: after the loop's turn, in order, bounded, and deaf to failing observers."""

from __future__ import annotations

import asyncio
import logging

import pytest

from fileferry.observability import Dispatcher, Origin, SessionLog
from fileferry.observability import events as seen

ORIGIN = Origin(7, "127.0.0.1", "bob")


def _deleted(i: int) -> seen.FileDeleted:
    return seen.FileDeleted(ORIGIN, f"/f{i}")


async def _next_turns(n: int = 1) -> None:
    """Return after ``n`` more turns of the loop (callbacks queued before run first)."""
    for _ in range(n):
        done = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(done.set_result, None)
        await done


def test_observers_run_after_the_turn_in_order() -> None:
    got: list[seen.SessionEvent] = []

    async def main() -> list[int]:
        d = Dispatcher([got.append])
        for i in range(3):
            d.emit(_deleted(i))
        seen_now = len(got)  # nothing yet: delivery waits for the turn to end
        await _next_turns()
        return [seen_now, len(got)]

    assert asyncio.run(main()) == [0, 3]
    assert [e.path for e in got] == ["/f0", "/f1", "/f2"]  # type: ignore[attr-defined]


def test_a_burst_is_spread_over_turns_and_all_delivered() -> None:
    got: list[seen.SessionEvent] = []

    async def main() -> list[int]:
        d = Dispatcher([got.append], batch=2)
        for i in range(5):
            d.emit(_deleted(i))
        counts = []
        for _ in range(3):
            await _next_turns()
            counts.append(len(got))
        return counts

    counts = asyncio.run(main())
    assert counts[0] < 5 and counts[-1] == 5  # not all in the first callback
    assert [e.path for e in got] == [f"/f{i}" for i in range(5)]  # type: ignore[attr-defined]


def test_the_queue_is_bounded_and_drops_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    got: list[seen.SessionEvent] = []

    async def main() -> int:
        d = Dispatcher([got.append], max_pending=3)
        for i in range(5):
            d.emit(_deleted(i))
        await _next_turns()
        return d.dropped

    assert asyncio.run(main()) == 2
    assert len(got) == 3
    assert "dropping session events" in caplog.text


def test_a_failing_observer_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    got: list[seen.SessionEvent] = []

    def boom(event: seen.SessionEvent) -> None:
        raise RuntimeError("observer bug")

    async def main() -> None:
        d = Dispatcher([boom, got.append])
        d.emit(_deleted(1))
        d.emit(_deleted(2))
        await _next_turns()

    asyncio.run(main())
    assert len(got) == 2
    failures = [r for r in caplog.records if r.name == "fileferry.observability"]
    assert len(failures) == 2
    assert all("failed on delete; skipped" in r.getMessage() for r in failures)


def test_without_a_running_loop_events_are_delivered_at_once() -> None:
    got: list[seen.SessionEvent] = []
    Dispatcher([got.append]).emit(_deleted(1))
    assert len(got) == 1


def test_no_observers_means_inactive() -> None:
    d = Dispatcher()
    assert not d.active
    d.emit(_deleted(1))  # a no-op, no loop needed


def test_session_log_line_and_timestamp(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fileferry.session")
    at = 1_700_000_000.25
    SessionLog()(seen.TransferFinished(ORIGIN, "RETR", "/a b", "download", 10, 0.12345, 226, at=at))
    SessionLog()(seen.PortRefused(Origin(8, "::1"), "10.0.0.1", None, "foreign address"))
    SessionLog()(seen.SessionOpened(Origin(9, "::1")))
    SessionLog()(seen.SiteExecStarted(ORIGIN, "greet", ("a", "b")))
    SessionLog()(seen.ModeChanged(ORIGIN, "/x", 0o644))
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "session=7 peer=127.0.0.1 user=bob transfer cmd='RETR' path='/a b' bytes=10 secs=0.123 "
        "result=226",
        "session=8 peer=::1 user=- port-refused host='10.0.0.1' reason='foreign address'",
        "session=9 peer=::1 user=- connect ",
        "session=7 peer=127.0.0.1 user=bob site-exec name='greet' args=['a', 'b']",
        "session=7 peer=127.0.0.1 user=bob chmod path='/x' mode='644'",
    ]
    # Stamped when it happened, not when it was written.
    assert caplog.records[0].created == at
    assert caplog.records[0].msecs == 250


def test_events_are_frozen() -> None:
    event = _deleted(1)
    with pytest.raises(AttributeError):
        event.path = "/other"  # type: ignore[misc]


class _Picky:
    """An observer that subscribes to some event types only."""

    def __init__(self, *kinds: type[seen.SessionEvent]) -> None:
        self.event_types = kinds
        self.got: list[seen.SessionEvent] = []

    def __call__(self, event: seen.SessionEvent) -> None:
        self.got.append(event)


def test_observers_get_only_the_event_types_they_declare() -> None:
    deletes, sessions = _Picky(seen.FileDeleted), _Picky(seen.SessionOpened, seen.SessionClosed)
    everything: list[seen.SessionEvent] = []

    async def main() -> None:
        d = Dispatcher([deletes, sessions, everything.append])
        d.emit(seen.SessionOpened(ORIGIN))
        d.emit(_deleted(1))
        d.emit(seen.Renamed(ORIGIN, "/a", "/b"))
        d.emit(seen.SessionClosed(ORIGIN))
        await _next_turns()

    asyncio.run(main())
    assert [type(e) for e in deletes.got] == [seen.FileDeleted]
    assert [type(e) for e in sessions.got] == [seen.SessionOpened, seen.SessionClosed]
    assert [type(e).__name__ for e in everything] == [
        "SessionOpened",
        "FileDeleted",
        "Renamed",
        "SessionClosed",
    ]


def test_an_event_nobody_wants_is_not_queued() -> None:
    picky = _Picky(seen.FileDeleted)
    d = Dispatcher([picky])
    assert d.wants(seen.FileDeleted) and not d.wants(seen.SessionOpened)
    # Outside a loop a queued event would be delivered at once; an unwanted
    # one must not even be queued (and so needs no loop at all).
    d.emit(seen.SessionOpened(ORIGIN))
    assert picky.got == [] and not d._pending
    d.emit(_deleted(1))
    assert [type(e) for e in picky.got] == [seen.FileDeleted]


def test_a_base_class_subscribes_to_its_subclasses() -> None:
    picky = _Picky(seen.SessionEvent)
    d = Dispatcher([picky])
    d.emit(_deleted(1))
    d.emit(seen.SessionOpened(ORIGIN))
    assert len(picky.got) == 2
    assert not Dispatcher().wants(seen.FileDeleted)
