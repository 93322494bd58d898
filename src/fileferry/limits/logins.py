"""Password checks in flight, capped per client key and per user name.

A ban can only count failures that were decided. Checking a password takes a
hash in a thread (tens of milliseconds), and a failure then waits out the
failure delay, so a client that sends 150 guesses on 150 connections at once
had all 150 checked before the first failure was even counted. With at most
``per_client`` checks in flight per address, an address gets at most
``ban_threshold + per_client - 1`` wrong passwords checked before its ban
(the failures that earn it, and the checks already running when the last one
was decided). The cap per user name does the same for guessing spread over
many addresses, none of which ever gets banned: it bounds how many guesses
at one account run at once, whatever their source.

A check past a cap waits its turn instead of being refused: a legitimate
client that opens a dozen connections at once (rclone, lftp's mirror) logs
them in a few at a time, and never sees an error. The caller bounds the wait
(the session's login deadline) by cancelling it.

Per process: with ``--workers N`` each worker has its own gate with a share
of each cap (:func:`share`), so the whole server allows about the configured
number. The ban the checks feed is shared by every worker; only how many
checks run at once is split, which is what bounds the guesses that slip in
before a ban. Keeping the gate per worker means a wait is woken by the
release that frees it, on the same loop, never by polling a shared table.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


def share(cap: int, workers: int) -> int:
    """One worker's share of a server-wide ``cap``: rounded up, at least one."""
    return max(1, -(-cap // max(1, workers)))


class _Slots:
    """Counts per name under one cap, and the checks waiting for each name."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.busy: dict[str, int] = {}
        self.waiting: dict[str, deque[asyncio.Future[None]]] = {}

    def full(self, name: str) -> bool:
        return self.busy.get(name, 0) >= self.cap

    def take(self, name: str) -> None:
        self.busy[name] = self.busy.get(name, 0) + 1

    def give(self, name: str) -> None:
        left = self.busy.get(name, 0) - 1
        if left > 0:
            self.busy[name] = left
        else:
            self.busy.pop(name, None)

    def wake(self, name: str) -> None:
        """Let the longest waiter for ``name`` try again (one slot, one waiter)."""
        queue = self.waiting.get(name)
        while queue:
            future = queue.popleft()
            if not future.done():
                future.set_result(None)
                break
        if queue is not None and not queue:
            del self.waiting[name]

    def enqueue(self, name: str, future: asyncio.Future[None], first: bool) -> None:
        queue = self.waiting.setdefault(name, deque())
        if first:
            queue.appendleft(future)
        else:
            queue.append(future)

    def forget(self, name: str, future: asyncio.Future[None]) -> None:
        queue = self.waiting.get(name)
        if queue is None:
            return
        with contextlib.suppress(ValueError):
            queue.remove(future)
        if not queue:
            del self.waiting[name]


class LoginGate:
    """Password checks in flight in this process, per client key and per user name.

    Used from one event loop. Every :meth:`acquire` that returns must be
    matched by one :meth:`release` with the same names. Waiters are woken
    in order, one per freed slot; a waiter woken for a slot it cannot use
    (the other cap is full) passes the wake-up on, so no slot stays free
    while someone waits for it. All state is bounded by the checks in flight
    and waiting, at most one per session.
    """

    def __init__(self, per_client: int, per_user: int) -> None:
        self._clients = _Slots(per_client)
        self._users = _Slots(per_user)

    def in_flight(self, key: str) -> int:
        """Checks from ``key`` running now (for tests and status pages)."""
        return self._clients.busy.get(key, 0)

    def try_acquire(self, key: str, user: str) -> bool:
        """Take a turn if one is free now (what :meth:`acquire` does first), else False.

        The common case, one login at a time, needs no coroutine and no
        timeout around a wait that will not happen.
        """
        clients, users = self._clients, self._users
        if clients.full(key) or users.full(user):
            return False
        clients.take(key)
        users.take(user)
        return True

    async def acquire(self, key: str, user: str) -> None:
        """Return once a check of ``user``'s password from ``key`` may run.

        Cancelling it (a timeout, the session's end) leaves nothing taken.
        """
        clients, users = self._clients, self._users
        woken: tuple[_Slots, str] | None = None
        while True:
            if not clients.full(key) and not users.full(user):
                clients.take(key)
                users.take(user)
                return
            slots, name = (clients, key) if clients.full(key) else (users, user)
            if woken is not None:
                again_slots, again_name = woken
                if not again_slots.full(again_name):
                    again_slots.wake(again_name)  # a slot we cannot use: the next may
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            # Woken but beaten to the slot: stay at the head of the line.
            slots.enqueue(name, future, first=woken == (slots, name))
            try:
                await future
            except BaseException:
                if future.done() and not future.cancelled():
                    slots.wake(name)  # woken, then cancelled: hand the turn on
                else:
                    slots.forget(name, future)
                raise
            woken = (slots, name)

    def release(self, key: str, user: str) -> None:
        """The check has ended (and its failure delay, if it failed)."""
        self._clients.give(key)
        self._users.give(user)
        self._clients.wake(key)
        self._users.wake(user)
