"""Every limit a server enforces: session caps, bans, account sessions, quotas, rates.

The server depends on the protocols of :mod:`fileferry.limits.interfaces`
only; :func:`fileferry.limits.factory.make_limits` picks their
implementation once: dictionaries of this process (:mod:`.local`,
:mod:`.ledger`) for one worker, tables in shared memory (:mod:`.shared`)
for ``--workers N``. This package imports nothing of fileferry but
``errors`` and itself.
"""
