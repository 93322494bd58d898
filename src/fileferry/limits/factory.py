"""The one place that picks the limits implementation, once, when the app is built.

Three choices: dictionaries of this process (one worker), tables in shared
memory (``--workers``), or a PostgreSQL database that every node and every
worker shares (``--db postgresql://...``: :mod:`fileferry.limits.pgsync` and
:mod:`fileferry.limits.pgquota`). With an SQLite ``db`` the limits stay
local or in shared memory: SQLite is one file on one machine, and the
shared-memory tables already span its workers, a few hundred times faster
than a file lock per connection would.
"""

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
    config: LimitConfig,
    shared: SharedLimits | None = None,
    usage_file: str | None = None,
    *,
    database: str | None = None,
    node: str = "",
) -> Limits:
    """Dictionaries of this process, worker ``shared.slot``'s view of the shared
    tables, or this instance's share of a database several nodes share.

    ``usage_file``: where quota figures survive a restart (see
    :mod:`fileferry.limits.usagefile`); without it they are walked at each
    account's first login of a run. ``database``: a ``postgresql://`` URL;
    the limits are then the cluster's (``shared`` only splits the login
    checks), held under leases of ``config.limits.lease_time`` seconds by
    this instance of ``node``.
    """
    sessions, bans = config.limits.sessions, config.limits.bans
    # Per worker, each with its share of the caps (see limits/logins.py).
    workers = shared.workers if shared is not None else 1
    logins = LoginGate(share(bans.checks_per_ip, workers), share(bans.checks_per_user, workers))
    if database is not None:
        from fileferry.limits.pgquota import PgLedger
        from fileferry.limits.pgsync import Cluster, ClusterAccounts, ClusterBans, ClusterSessions

        cluster = Cluster(database, node, lease=config.limits.lease_time, bans=bans)
        return Limits(
            ClusterSessions(cluster, sessions.max, sessions.per_ip),
            ClusterBans(cluster),
            ClusterAccounts(cluster),
            PgLedger(cluster),
            logins,
        )
    records = UsageFile(usage_file) if usage_file is not None else None
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
