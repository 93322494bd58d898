"""Password guessing in parallel must not get around the ban.

A ban counted only failures already decided, and was looked at only when a
connection was accepted: 150 connections opened at once from one address
each had their password checked (120 wrong ones before the first 421), and
the right password among them logged in. Now a failure counts the moment it
is decided, password checks in flight are capped per address and per user
name (``max_login_checks_per_ip``, ``max_login_checks_per_user``), and a
banned address gets 421 on its next command even on a connection it opened
before the ban.

How many wrong passwords may be checked before the ban: ``ban_threshold``
failures, plus the checks that were already in flight when the last of them
was decided (at most ``max_login_checks_per_ip - 1``). With several workers
each takes its share of the cap (``ceil(cap / workers)``, at least one), so
the bound uses ``workers * ceil(cap / workers)`` instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fileferry import config
from fileferry.observability import events as seen
from fileferry.server.thread import ServerThread

THRESHOLD = 5
FLOOD = 150


class Counter:
    """Counts the session events of some kinds (several worker threads call it)."""

    def __init__(self) -> None:
        self.events: list[seen.SessionEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: seen.SessionEvent) -> None:
        with self._lock:
            self.events.append(event)

    def count(self, kind: type[seen.SessionEvent]) -> int:
        with self._lock:
            return sum(1 for e in self.events if isinstance(e, kind))


@pytest.fixture(params=[1, 2], ids=["one-worker", "two-workers"])
def guarded(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[ServerThread, Counter]]:
    """One worker, and two (a share of the caps each, the ban shared)."""
    root = tmp_path / "root"
    root.mkdir()
    counter = Counter()
    cfg = config.build(
        {
            "root": str(root),
            "port": 0,
            "ban_threshold": THRESHOLD,
            "ban_time": 600,
            # The delay is what let every parallel guess in: keep a real one.
            "login_failure_delay": 0.5,
            "users": (config.parse_user_spec("alice:secret"),),
            "workers": request.param,
        }
    )
    with ServerThread(cfg, observers=[counter]) as srv:
        yield srv, counter


def checks_allowed(srv: ServerThread) -> int:
    """The most wrong passwords the server may check from one address before its ban."""
    cap = srv.servers[0].config.limits.bans.checks_per_ip
    workers = len(srv.servers)
    per_worker = max(1, -(-cap // workers))
    return THRESHOLD - 1 + workers * per_worker


async def _reply(reader: asyncio.StreamReader) -> bytes:
    """One reply's last line (b"" when the server hung up)."""
    while True:
        line = await asyncio.wait_for(reader.readline(), 60)
        if not line or line[3:4] != b"-":
            return line


async def _guess(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pw: str) -> bytes:
    """USER alice, PASS ``pw``: the reply that decided it (331 never does)."""
    writer.write(f"USER alice\r\nPASS {pw}\r\n".encode())
    await writer.drain()
    first = await _reply(reader)
    if not first.startswith(b"331"):
        return first  # USER itself was refused
    return await _reply(reader)


async def _flood(address: tuple[str, int]) -> tuple[list[bytes], bytes, bytes]:
    """150 parallel guesses; then the right password on a connection opened before them."""
    conns = await asyncio.gather(*(asyncio.open_connection(*address) for _ in range(FLOOD + 1)))
    greetings = await asyncio.gather(*(_reply(r) for r, _ in conns))
    assert all(g.startswith(b"220") for g in greetings), set(greetings)
    keeper, guessers = conns[0], conns[1:]
    outcomes = await asyncio.gather(
        *(_guess(r, w, f"wrong{i}") for i, (r, w) in enumerate(guessers))
    )
    right = await _guess(*keeper, "secret")
    after = b"(not read)"
    if right.startswith(b"421"):
        after = await asyncio.wait_for(keeper[0].read(), 60)  # the server closes after it
    for _, w in conns:
        w.close()
    return outcomes, right, after


def test_parallel_guesses_are_capped_and_banned(guarded) -> None:
    srv, counter = guarded
    outcomes, right, after = asyncio.run(_flood(srv.address))
    srv.call(lambda server: _flush(server))

    checked = counter.count(seen.LoginFailed)
    assert THRESHOLD <= checked <= checks_allowed(srv), checked
    assert not right.startswith(b"230"), "the right password got in after the ban"
    assert sum(o.startswith(b"530") for o in outcomes) <= checks_allowed(srv)
    assert all(o.startswith((b"530", b"421")) for o in outcomes), set(outcomes)
    assert sum(o.startswith(b"421") for o in outcomes) >= FLOOD - checks_allowed(srv)
    # The right password, on a connection opened before the ban: refused, and closed.
    assert right.startswith(b"421"), right
    assert after == b""
    assert counter.count(seen.LoginSucceeded) == 0


async def _flush(server: object) -> None:
    server.app.dispatcher.flush()  # type: ignore[attr-defined]
