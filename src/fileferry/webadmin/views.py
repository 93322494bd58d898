"""The JSON shapes of sessions, transfers, users, bans and status.

One place for both doors: the API returns these, and the pages render the
same dictionaries (the dashboard's script reads the API's), so a figure on
a page is the figure a script gets.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fileferry.users import fields
from fileferry.webadmin.version import version

if TYPE_CHECKING:
    from fileferry.limits.interfaces import Ban
    from fileferry.users.base import StoredUser
    from fileferry.webadmin.model import Host, SessionView, StorageFigure, TransferView, Usage
    from fileferry.webadmin.stats import Stats


def session(s: SessionView) -> dict[str, object]:
    return {
        "id": s.id,
        "address": s.address,
        "user": s.user,
        "tls": s.tls,
        "idle_seconds": round(s.idle, 1),
        "connected_seconds": round(s.connected, 1),
        "command": s.command,
    }


def transfer(t: TransferView) -> dict[str, object]:
    return {
        "session": t.session,
        "user": t.user,
        "address": t.address,
        "command": t.command,
        "path": t.path,
        "direction": t.direction,
        "bytes": t.bytes,
        "size": t.size,
        "percent": None if not t.size else min(100.0, round(100.0 * t.bytes / t.size, 1)),
        "rate": round(t.rate),
    }


def ban(b: Ban) -> dict[str, object]:
    return {
        "address": b.key,
        "reason": b.reason,
        "seconds_left": round(b.left, 1),
        "until": fields.format_expiry(time.time() + b.left),
        "times_banned": b.times,
    }


def status_of(user: StoredUser, now: float) -> str:
    account = user.account
    if account.disabled:
        return "disabled"
    if account.expires is not None and now >= account.expires:
        return "expired"
    return "enabled"


def user(u: StoredUser, usage: Usage | None, now: float) -> dict[str, object]:
    data = fields.account_to_dict(u.account)
    data["status"] = status_of(u, now)
    data["created"] = fields.format_expiry(u.created)
    data["last_login"] = None if u.last_login is None else fields.format_expiry(u.last_login)
    data["usage"] = None if usage is None else {"bytes": usage.bytes, "files": usage.files}
    return data


def storage_state(figure: StorageFigure) -> str:
    """The figure in one word: ok, measuring (none yet), stale (last attempt failed), unknown."""
    if figure.used is None:
        return "unknown" if figure.error is not None else "measuring"
    return "stale" if figure.error is not None else "ok"


def storage(figure: StorageFigure, now: float) -> dict[str, object]:
    """The served root's usage: a disk's used/total, or a bucket's used bytes and objects.

    A bucket has no capacity, so its ``total`` is null. ``measured_at`` and
    ``age_seconds`` say how old the figure is (a bucket is counted in the
    background, every ``interval_seconds``); ``error`` why the last attempt failed.
    """
    at = figure.measured_at
    return {
        "kind": figure.kind,
        "location": figure.location,
        "state": storage_state(figure),
        "used": figure.used,
        "total": figure.total,
        "objects": figure.objects,
        "complete": figure.complete,
        "measured_at": None if at is None else fields.format_expiry(at),
        "age_seconds": None if at is None else round(max(0.0, now - at), 1),
        "interval_seconds": figure.interval,
        "error": figure.error,
    }


def status(host: Host, stats: Stats) -> dict[str, object]:
    hour = stats.hour()
    figure = host.storage_usage()
    disk = (
        (figure.used, figure.total)
        if figure.kind == "disk" and figure.used is not None and figure.total is not None
        else None
    )
    return {
        "version": version(),
        "sessions": len(host.live.sessions()),
        "transfers": len(host.live.transfers()),
        "logins_last_hour": sum(m.logins for m in hour),
        "failed_logins_last_hour": sum(m.failures for m in hour),
        "bans": len(host.bans.bans()),
        "disk": None if disk is None else {"used": disk[0], "total": disk[1]},
        "storage": storage(figure, time.time()),
        "per_minute": [
            {"minute": fields.format_expiry(m.start), "up": m.up, "down": m.down} for m in hour
        ],
    }
