"""Who is asking: administrators' logins, web sessions, CSRF tokens and API tokens.

* **Logins share the FTP defender.** A failed admin login counts against the
  address in the same :class:`~fileferry.limits.interfaces.BanList` as a
  failed FTP login, waits the same failure delay, and takes a turn in the
  same :class:`~fileferry.limits.interfaces.LoginChecks` caps (under the
  name ``admin:NAME``, so it never queues behind an FTP user's checks). A
  banned address gets no admin login and no API call either.
* **Web sessions are server-side.** The cookie holds only a random key
  (``HttpOnly``, ``SameSite=Strict``, ``Secure`` and ``__Host-`` under
  HTTPS); the session lives in this process and ends with it, after 30
  idle minutes, after 12 hours, at logout, and within seconds of the
  administrator's deletion or password change (``fileferry admin``, in
  another process: the store is asked again every few seconds).
* **CSRF**: each web session has its own token, required in every form
  (field ``csrf``) and in every unsafe API call made with the cookie
  (header ``X-CSRF-Token``). The login form gets a token bound to a
  short-lived pre-login cookie (double submit). API calls with a bearer
  token need none: a browser never sends one by itself.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fileferry.limits.keys import client_key
from fileferry.users.admins import token_digest
from fileferry.users.passwords import verify_off_loop

if TYPE_CHECKING:
    from starlette.requests import Request

    from fileferry.users.admins import Administrator
    from fileferry.webadmin.model import Host
    from fileferry.webadmin.stats import Stats

log = logging.getLogger("fileferry.admin")

#: Web sessions end after this long without a request, and this long in all.
IDLE = 1800.0
LIFETIME = 12 * 3600.0
#: Web sessions kept at once; the oldest go first.
MAX_SESSIONS = 1000
#: The longest a login waits for its turn to check a password.
LOGIN_WAIT = 10.0
#: How long "at least one administrator exists" is believed without asking again.
ADMINS_CACHE = 3.0
#: The longest name or password the login form takes (longer is simply wrong).
MAX_FIELD = 1024
#: How often a web session's administrator is looked up again (deleted? new password?).
RECHECK = 5.0


class Refused(Exception):
    """A login that is not even tried (banned, too busy); the message is for the page."""


@dataclass(slots=True)
class WebSession:
    admin: str
    csrf: str
    created: float
    seen: float
    #: The administrator's password hash at login: a change (``fileferry admin
    #: passwd``, in another process) or a deletion ends the session.
    password_hash: str = ""
    #: When the store last confirmed both (``time.monotonic``).
    checked: float = 0.0


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: an administrator, by cookie or by API token."""

    admin: str
    via: str
    session: WebSession | None = None


def peer_key(request: Request) -> str:
    """The client key (an address, or an IPv6 /64) bans are counted by."""
    client = request.client
    return client_key(client.host if client is not None else "")


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two secrets (False if either is missing)."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


class Gatekeeper:
    """Logins, sessions and tokens of one admin listener."""

    def __init__(self, host: Host, stats: Stats, *, secure: bool) -> None:
        self.host = host
        self.stats = stats
        self.secure = secure
        prefix = "__Host-" if secure else ""
        self.cookie = prefix + "ffadmin"
        self.pre_cookie = prefix + "ffadmin_login"
        self._sessions: dict[str, WebSession] = {}
        self._admins_seen = 0.0

    # --- is there anyone to let in at all? -----------------------------------------------

    async def has_admins(self) -> bool:
        now = time.monotonic()
        if now - self._admins_seen < ADMINS_CACHE:
            return True
        if await self.host.admins.count_admins() > 0:
            self._admins_seen = now
            return True
        return False

    # --- logins ----------------------------------------------------------------------------

    async def login(self, key: str, name: str, password: str) -> Administrator | None:
        """The administrator if ``password`` is theirs, else None (after the delay).

        Raises :class:`Refused` when the address is banned or no turn came.
        """
        bans = self.host.bans
        left = bans.banned_for(key)
        if left:
            raise Refused(
                f"Too many failed logins from your address; try again in {int(left) + 1} s."
            )
        name, password = name[:MAX_FIELD], password[:MAX_FIELD]
        checks = self.host.login_checks
        turn = "admin:" + name
        try:
            async with asyncio.timeout(LOGIN_WAIT):
                await checks.acquire(key, turn)
        except TimeoutError:
            raise Refused("Too many logins in progress; try again later.") from None
        try:
            admin = await self.host.admins.find_admin(name) if name else None
            ok = await verify_off_loop(password, admin.password_hash if admin else None)
            if ok and admin is not None:
                await self.host.admins.admin_logged_in(admin.name, time.time())
                log.info("admin=%s logged in from %s", admin.name, key)
                return admin
            self.stats.admin_failure()
            if bans.record_failure(key):
                log.warning("admin login: %s banned after failed logins", key)
            log.warning("admin login failed from %s for %r", key, name[:64])
            await asyncio.sleep(self.host.config.limits.bans.failure_delay)
            return None
        finally:
            checks.release(key, turn)

    # --- web sessions ----------------------------------------------------------------------

    def open_session(self, admin: Administrator) -> tuple[str, WebSession]:
        now = time.monotonic()
        self._expire(now)
        while len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions, key=lambda k: self._sessions[k].created)
            del self._sessions[oldest]
        key = secrets.token_urlsafe(32)
        session = self._sessions[key] = WebSession(
            admin.name, secrets.token_urlsafe(32), now, now, admin.password_hash, now
        )
        return key, session

    def close_session(self, key: str | None) -> None:
        if key:
            self._sessions.pop(key, None)

    def _expire(self, now: float) -> None:
        dead = [
            k
            for k, s in self._sessions.items()
            if now - s.seen > IDLE or now - s.created > LIFETIME
        ]
        for key in dead:
            del self._sessions[key]

    async def session_of(self, request: Request) -> WebSession | None:
        key = request.cookies.get(self.cookie)
        if not key:
            return None
        session = self._sessions.get(key)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.seen > IDLE or now - session.created > LIFETIME:
            del self._sessions[key]
            return None
        if now - session.checked > RECHECK:
            admin = await self.host.admins.find_admin(session.admin)
            if admin is None or not same(admin.password_hash, session.password_hash):
                log.info("admin=%s: web session ended (administrator changed)", session.admin)
                self._sessions.pop(key, None)
                return None
            session.checked = now
        session.seen = now
        return session

    # --- any request -----------------------------------------------------------------------

    async def principal(self, request: Request) -> Principal | None:
        """Who makes ``request``: a bearer token's owner, or a web session's admin."""
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            key = peer_key(request)
            if self.host.bans.banned_for(key):
                return None
            owner = await self.host.admins.token_owner(token_digest(token.strip()))
            if owner is None:
                # Logged, not scored: a 256-bit token cannot be guessed, and an
                # automation job left with a revoked token must not get its
                # host banned from FTP as well.
                log.warning("admin API: an unknown token from %s", key)
                return None
            return Principal(owner, "token")
        session = await self.session_of(request)
        if session is None:
            return None
        return Principal(session.admin, "cookie", session)

    @staticmethod
    def csrf_ok(principal: Principal, supplied: str | None) -> bool:
        """Whether an unsafe request may go on: tokens need no CSRF token, cookies do."""
        if principal.via == "token":
            return True
        return principal.session is not None and same(principal.session.csrf, supplied)
