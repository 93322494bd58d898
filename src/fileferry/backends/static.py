"""The accounts a config names itself: ``--user``, ``[[user]]`` and anonymous."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from fileferry.protocol.commands import permission
from fileferry.users.base import ALL_PERMISSIONS, READ_ONLY, Account, HashedUserStore, UserStore
from fileferry.users.static import StaticUser, StaticUserStore

if TYPE_CHECKING:
    from fileferry.config.model import ServerConfig, UserConfig

#: The SITE EXEC permission letter, from the one command table.
EXEC_LETTER = permission("EXEC")


def static_account(config: ServerConfig, user: UserConfig) -> Account:
    """A ``--user``/``[[user]]`` account; ``permissions`` wins over ``write`` if given."""
    fields = dict(user.account_fields)
    perms = fields.pop("permissions", None)
    if perms is None:
        perms = ALL_PERMISSIONS if user.write else READ_ONLY
    if user.site_exec and EXEC_LETTER not in str(perms):
        perms = f"{perms}{EXEC_LETTER}"
    root = config.storage.root
    home = os.path.abspath(os.path.expanduser(user.home)) if user.home else root
    return Account(name=user.name, home=home, permissions=str(perms), **fields)  # type: ignore[arg-type]


def static_users(config: ServerConfig, fallback: HashedUserStore | None) -> UserStore:
    """The config's users and anonymous, asking ``fallback`` for any other name."""
    users = [StaticUser(static_account(config, u), u.password_hash) for u in config.users]
    anonymous = None
    if config.anonymous:
        perms = ALL_PERMISSIONS if config.write else READ_ONLY
        anonymous = Account("anonymous", config.storage.root, perms, anonymous=True)
    return StaticUserStore(users, anonymous, fallback=fallback)
