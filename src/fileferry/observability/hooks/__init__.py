"""Event hooks: operators' programs and URLs told about uploads, logins, bans...

:class:`~.runner.HookRunner` is the observer built from the ``[[hook]]``
tables (:mod:`fileferry.config.hooks`). It is imported only when hooks are
configured: a server without them loads none of this.
"""

from fileferry.observability.hooks.runner import HookRunner

__all__ = ["HookRunner"]
