"""What an administrator can change, each recorded in the log with their name.

Pages and API both call these, so an action is validated, carried out and
logged the same way whichever door it came through. Log lines name the
administrator, the action and its object, never a password or a token.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from fileferry.users.base import StoredUser, UnknownUser
from fileferry.users.passwords import hash_password
from fileferry.webadmin.forms import Parsed, parse_account

if TYPE_CHECKING:
    from fileferry.webadmin.model import Host

log = logging.getLogger("fileferry.admin")

#: What a kicked client reads in its 421.
KICKED = "Disconnected by an administrator."
#: The longest password an administrator may set for a user.
MAX_PASSWORD = 1024


class Invalid(Exception):
    """Bad input; ``errors`` maps each field to what is wrong with it."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = dict(errors)


def _password(value: object) -> tuple[str, bool]:
    """(password, generated?): the given one, or a fresh one when none was given."""
    if value is None or value == "":
        return secrets.token_urlsafe(15), True
    if not isinstance(value, str) or len(value) > MAX_PASSWORD:
        raise Invalid({"password": f"expected text of at most {MAX_PASSWORD} characters"})
    return value, False


class Actions:
    def __init__(self, host: Host) -> None:
        self.host = host

    @property
    def _db(self) -> str:
        db = self.host.config.user_store.db
        assert db is not None  # --admin requires one (config/validate.py)
        return db

    async def add_user(
        self, admin: str, values: Mapping[str, object]
    ) -> tuple[StoredUser, str | None]:
        """The new user, and its password if it was generated (shown once)."""
        parsed: Parsed = parse_account(
            {k: v for k, v in values.items() if k != "password"}, None, self._db, adding=True
        )
        if parsed.account is None:
            raise Invalid(parsed.errors)
        account = parsed.account
        password, generated = _password(values.get("password"))
        try:
            await self.host.users.get(account.name)
        except UnknownUser:
            pass
        else:
            raise Invalid({"name": f"user {account.name!r} already exists"})
        home = Path(account.home)
        if not home.is_dir():
            await asyncio.to_thread(home.mkdir, parents=True, mode=0o750)
        user = StoredUser(account, await asyncio.to_thread(hash_password, password))
        await self.host.users.add(user)
        log.info("admin=%s added user %s (home %s)", admin, account.name, account.home)
        return await self.host.users.get(account.name), password if generated else None

    async def update_user(self, admin: str, name: str, values: Mapping[str, object]) -> StoredUser:
        current = await self.host.users.get(name)
        if "name" in values and values["name"] != name:
            raise Invalid({"name": "a user cannot be renamed"})
        parsed = parse_account(
            {k: v for k, v in values.items() if k != "name"},
            current.account,
            self._db,
            adding=False,
        )
        if parsed.account is None:
            raise Invalid(parsed.errors)
        await self.host.users.update(parsed.account)
        changed = sorted(k for k in values if k != "name")
        log.info("admin=%s updated user %s (%s)", admin, name, ", ".join(changed) or "nothing")
        return await self.host.users.get(name)

    async def set_disabled(self, admin: str, name: str, disabled: bool) -> None:
        current = await self.host.users.get(name)
        await self.host.users.update(replace(current.account, disabled=disabled))
        log.info("admin=%s %s user %s", admin, "disabled" if disabled else "enabled", name)

    async def set_password(self, admin: str, name: str, value: object) -> str | None:
        """Reset ``name``'s password; the new one if it was generated (shown once)."""
        await self.host.users.get(name)
        password, generated = _password(value)
        await self.host.users.set_password(name, await asyncio.to_thread(hash_password, password))
        log.info("admin=%s reset the password of user %s", admin, name)
        return password if generated else None

    async def delete_user(self, admin: str, name: str) -> None:
        await self.host.users.delete(name)
        log.info("admin=%s deleted user %s (files kept)", admin, name)

    async def kick(self, admin: str, session_id: int) -> bool:
        done = await self.host.live.kick(session_id, KICKED)
        if done:
            log.info("admin=%s kicked session=%d", admin, session_id)
        return done

    def lift(self, admin: str, address: str) -> bool:
        done = self.host.bans.lift(address)
        if done:
            log.info("admin=%s lifted the ban of %s", admin, address)
        return done
