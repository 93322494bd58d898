"""The log formatter: the standard library's text, cheaper; and the session log a user reads."""

from __future__ import annotations

import ftplib
import io
import logging
import re
import sys
from pathlib import Path

import pytest
from test_serve_cli import Served

from fileferry.logformat import FORMAT, LineFormatter


def _record(created: float, msg: str = "session=%d peer=%s %s", args: tuple = (7, "::1", "é")):
    rec = logging.LogRecord("fileferry.session", logging.INFO, "(unknown file)", 0, msg, args, None)
    rec.created = created
    rec.msecs = int((created - int(created)) * 1000) + 0.0
    return rec


@pytest.mark.parametrize(
    "created",
    [0.0, 1.9995, 1_763_788_799.999, 1_763_788_800.0, 1_763_788_800.001, 4_102_444_800.5],
)
def test_same_text_as_the_standard_formatter(created: float) -> None:
    ours, std = LineFormatter(), logging.Formatter(FORMAT)
    assert ours.format(_record(created)) == std.format(_record(created))


def test_the_cached_second_never_leaks_into_the_next() -> None:
    ours, std = LineFormatter(), logging.Formatter(FORMAT)
    # Across second, minute, day and year boundaries, and back in time (a clock step).
    times = [
        1_767_225_599.998,
        1_767_225_599.999,
        1_767_225_600.0,
        1_767_225_601.0,
        1_767_225_599.5,
    ]
    for created in times:
        assert ours.format(_record(created)) == std.format(_record(created))


def test_tracebacks_and_custom_dates_take_the_standard_path() -> None:
    ours, std = LineFormatter(), logging.Formatter(FORMAT)
    try:
        raise ValueError("boom")
    except ValueError:
        exc = sys.exc_info()
    a, b = _record(1_763_788_800.25), _record(1_763_788_800.25)
    a.exc_info = b.exc_info = exc
    text = ours.format(a)
    assert text == std.format(b)
    assert "Traceback" in text and "ValueError: boom" in text
    assert ours.formatTime(a, "%Y") == std.formatTime(b, "%Y")
    # A message that is not a string, as logging allows.
    c, d = _record(5.5, msg=ValueError("x"), args=()), _record(5.5, msg=ValueError("x"), args=())  # type: ignore[arg-type]
    assert ours.format(c) == std.format(d)


LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO fileferry\.session "
    r"session=(\d+) peer=127\.0\.0\.1 user=(\S+) (\S+)(?: (.*))?$"
)


def test_a_session_is_logged_in_order_with_its_fields(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"x" * 1000)
    s = Served(str(tmp_path), "--port", "0", "--user", "bob:pw1", "--no-anonymous")
    try:
        f = s.ftp()
        with pytest.raises(ftplib.error_perm, match=r"^530"):
            f.login("bob", "wrong")
        f.login("bob", "pw1")
        buf = io.BytesIO()
        f.retrbinary("RETR a.bin", buf.write)
        assert len(buf.getvalue()) == 1000
        f.quit()
    finally:
        assert s.stop() == 0
    assert s.proc.stderr is not None
    events = []
    for line in s.proc.stderr.read().splitlines():
        m = LINE.match(line)
        if m:
            events.append((m[1], m[2], m[3], m[4] or ""))
    sessions = {e[0] for e in events}
    assert len(sessions) == 1, events
    what = [(user, ev) for _, user, ev, _ in events]
    assert what == [
        ("-", "connect"),
        ("-", "login-failed"),
        ("bob", "login"),
        ("bob", "transfer"),
        ("bob", "disconnect"),
    ]
    assert "username='bob'" in events[1][3]
    assert "cmd='RETR'" in events[3][3] and "bytes=1000" in events[3][3]
    assert events[3][3].endswith("result=226")
