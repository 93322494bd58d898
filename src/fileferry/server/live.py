"""The web admin's view of the live sessions, and its kick.

Everything here is read from what the sessions already keep: the verb the
protocol core took last, the deadline of the read a session waits in, the
core's TLS facts, and the running transfer's data connection byte counter
(which every data path advances anyway, for STAT). Rates are differences
between two reads, taken when someone looks, so the data path pays nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from fileferry.server.handlers.transfers import SendFile
from fileferry.webadmin.model import SessionView, TransferView

if TYPE_CHECKING:
    from fileferry.server.control import ControlConnection

#: A rate is recomputed at most this often (seconds); reads in between reuse it.
_RATE_PERIOD = 0.5


def _verb(conn: ControlConnection) -> str:
    """The running transfer's command, else the verb of the line the core took last."""
    job = conn.transfer_job if conn.transfer_running else None
    if job is not None and job.command:
        return job.command
    return conn.session.verb or "-"


def _idle(conn: ControlConnection, now: float, loop_now: float, connected: float) -> float:
    """Seconds since the session was last heard from, read off its idle read's deadline.

    Only a logged-in session parked in that read has waited a known time
    (its timeout is the idle timeout); one that is running a command or a
    transfer is not idle, and one not logged in yet is counted from its connect.
    """
    if conn.account is None:
        return connected
    if conn.transfer_running:
        return 0.0
    due = conn._read_due
    if due is None:
        return max(0.0, now - conn.idle_since)
    if due < loop_now:
        return 0.0
    return max(0.0, conn._read_span - (due - loop_now))


def _tls(conn: ControlConnection) -> str:
    state = conn.state
    if not state.tls_control:
        return "none"
    return "control+data" if state.prot_private else "control"


class LiveSessions:
    """Reads the server's ``connections`` (task -> connection) when asked."""

    def __init__(self, connections: dict[asyncio.Task[None], ControlConnection]) -> None:
        self._connections = connections
        #: session id -> (job, bytes, time, rate) of the last read of its transfer.
        self._samples: dict[int, tuple[object, int, float, float]] = {}

    def sessions(self) -> list[SessionView]:
        now, loop_now = time.monotonic(), asyncio.get_running_loop().time()
        found = []
        for conn in sorted(self._connections.values(), key=lambda c: c.id):
            connected = now - conn.started
            found.append(
                SessionView(
                    conn.id,
                    conn.peer_host,
                    conn.account.name if conn.account is not None else None,
                    _tls(conn),
                    _idle(conn, now, loop_now, connected),
                    connected,
                    _verb(conn),
                )
            )
        return found

    def transfers(self) -> list[TransferView]:
        now = time.monotonic()
        found: list[TransferView] = []
        samples: dict[int, tuple[object, int, float, float]] = {}
        for conn in sorted(self._connections.values(), key=lambda c: c.id):
            job = conn.transfer_job
            dc = conn.data_connection
            if job is None or not conn.transfer_running or dc is None:
                continue
            moved = dc.bytes
            last = self._samples.get(conn.id)
            if last is None or last[0] is not job:
                samples[conn.id] = (job, moved, now, 0.0)  # first look: no rate yet
                rate = 0.0
            elif now - last[2] >= _RATE_PERIOD:
                rate = (moved - last[1]) / (now - last[2])
                samples[conn.id] = (job, moved, now, rate)
            else:  # looked again too soon for a fair figure: keep the older base
                rate = last[3]
                samples[conn.id] = last
            event = job.event
            size = None
            if isinstance(job, SendFile):
                offset = getattr(event, "offset", 0) or 0
                size = max(0, job.reader.size - offset)
            found.append(
                TransferView(
                    conn.id,
                    conn.account.name if conn.account is not None else None,
                    conn.peer_host,
                    job.command,
                    getattr(event, "path", ""),
                    job.direction,
                    dc.bytes,
                    size,
                    rate,
                )
            )
        self._samples = samples
        return found

    async def kick(self, session_id: int, farewell: str) -> bool:
        for task, conn in list(self._connections.items()):
            if conn.id == session_id:
                conn.kick(farewell)
                # Return once it is gone (its upload discarded), so the
                # caller's next look no longer shows it.
                await asyncio.wait({task}, timeout=10)
                return True
        return False
