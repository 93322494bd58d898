"""The session log's records: built from a template when they may be, identical either way."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from fileferry.observability import Origin, SessionLog
from fileferry.observability.events import LoginFailed, SessionOpened

_FLAGS = ("logThreads", "logProcesses", "logMultiprocessing", "logAsyncioTasks")


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept() -> Iterator[tuple[logging.Logger, Keep]]:
    logger = logging.getLogger("test.sessionlog.records")
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    saved = {name: getattr(logging, name, None) for name in _FLAGS}
    try:
        yield logger, handler
    finally:
        for name, value in saved.items():
            if value is None:
                if hasattr(logging, name):
                    delattr(logging, name)
            else:
                setattr(logging, name, value)
        logger.removeHandler(handler)


def _log_both_ways(logger: logging.Logger, keep: Keep) -> tuple[logging.LogRecord, ...]:
    events = (
        SessionOpened(Origin(7, "192.0.2.1")),
        LoginFailed(Origin(7, "192.0.2.1"), "bob"),
    )
    for flag in _FLAGS:  # what fileferry serve sets: the template path
        setattr(logging, flag, False)
    log = SessionLog(logger)
    for event in events:
        log(event)
    logging.logThreads = logging.logProcesses = True  # the standard path
    for event in events:
        log(event)
    return tuple(keep.records)


def test_template_records_match_standard_ones(kept: tuple[logging.Logger, Keep]) -> None:
    logger, keep = kept
    fast_open, fast_fail, slow_open, slow_fail = _log_both_ways(logger, keep)
    for fast, slow in ((fast_open, slow_open), (fast_fail, slow_fail)):
        assert fast.getMessage() == slow.getMessage()
        assert set(vars(fast)) == set(vars(slow))
        for name in ("name", "levelname", "levelno", "pathname", "filename", "module", "msg"):
            assert getattr(fast, name) == getattr(slow, name)
        # Stamped with the event's own time, not the time of writing.
        assert fast.created == fast.session_event.at
        assert slow.created == slow.session_event.at
        assert fast.msecs == slow.msecs == int((fast.created % 1) * 1000)
        assert abs((fast.relativeCreated - slow.relativeCreated) / 1000) < 1
    assert fast_fail.getMessage() == "session=7 peer=192.0.2.1 user=- login-failed username='bob'"
    # The template path leaves out what the flags switched off; the standard one fills it in.
    assert fast_open.thread is None and fast_open.process is None
    assert slow_open.thread is not None and slow_open.process is not None
