"""The one place that picks the limits implementation, once, when the app is built."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fileferry.limits.interfaces import LimitConfig, Limits
from fileferry.limits.ledger import LocalLedger
from fileferry.limits.local import AccountCounter, Defender, SessionCounter
from fileferry.limits.logins import LoginGate, share
from fileferry.limits.usagefile import UsageFile

if TYPE_CHECKING:
    from fileferry.limits.shared import SharedLimits


def make_limits(
    config: LimitConfig, shared: SharedLimits | None = None, usage_file: str | None = None
) -> Limits:
    """Dictionaries of this process, or worker ``shared.slot``'s view of the shared tables.

    ``usage_file``: where quota figures survive a restart (see
    :mod:`fileferry.limits.usagefile`); without it they are walked at each
    account's first login of a run.
    """
    records = UsageFile(usage_file) if usage_file is not None else None
    sessions, bans = config.limits.sessions, config.limits.bans
    # Per worker, each with its share of the caps (see limits/logins.py).
    workers = shared.workers if shared is not None else 1
    logins = LoginGate(share(bans.checks_per_ip, workers), share(bans.checks_per_user, workers))
    if shared is not None:
        return Limits(
            shared.session_slots(),
            shared.ban_list(),
            shared.account_slots(),
            shared.ledger(records),
            logins,
        )
    return Limits(
        SessionCounter(sessions.max, sessions.per_ip),
        Defender(bans.threshold, bans.window, bans.time, bans.max_time),
        AccountCounter(),
        LocalLedger(records, max_accounts=sessions.max + 16),
        logins,
    )
