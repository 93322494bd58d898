"""The HTML pages: dashboard, sessions, users, bans, and the login.

Plain forms and links, so every page works without JavaScript; the
dashboard's script only refreshes its figures and transfers from the API.
Every form carries the session's CSRF token, every POST checks it, and an
action answers with a redirect (POST, then GET) or, for a form with
errors, the form again with each error next to its field.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from fileferry.users import fields
from fileferry.users.base import Account, UnknownUser, UserStoreError
from fileferry.webadmin import views
from fileferry.webadmin.actions import Invalid
from fileferry.webadmin.auth import Refused, peer_key, same
from fileferry.webadmin.forms import LETTERS, form_to_fields

if TYPE_CHECKING:
    from starlette.datastructures import FormData
    from starlette.requests import Request

    from fileferry.webadmin.actions import Actions
    from fileferry.webadmin.auth import Gatekeeper, WebSession
    from fileferry.webadmin.model import Host
    from fileferry.webadmin.stats import Stats

log = logging.getLogger("fileferry.admin")

#: A form bigger than this is refused before it is parsed.
MAX_FORM = 256 * 1024
#: What a redirect after an action tells the next page (fixed texts: nothing reflected).
NOTICES = {
    "kicked": "Session {} was disconnected.",
    "gone": "Session {} had already ended.",
    "lifted": "The ban of {} was lifted.",
    "notbanned": "{} was not banned any more.",
    "added": "User {} was added.",
    "updated": "User {} was saved.",
    "disabled": "User {} was disabled.",
    "enabled": "User {} was enabled.",
    "deleted": "User {} was deleted (their files are kept).",
    "password": "The password of {} was changed.",
}

STALE = "The form's security token is missing or stale: reload the page and try again."

Page = "Callable[[Request, WebSession], Awaitable[Response]]"


def _size(n: object) -> str:
    return fields.format_size(int(n)) if isinstance(n, int) else "-"


def _ago(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h"


def _clock(stamp: object) -> str:
    """``12:03:10 UTC`` from the API's ``2025-06-01T12:03:10Z`` (the date only if not today)."""
    if not isinstance(stamp, str) or len(stamp) < 19:
        return "-"
    today = time.strftime("%Y-%m-%d", time.gmtime())
    day, clock = stamp[:10], stamp[11:19]
    return f"{clock} UTC" if day == today else f"{day} {clock} UTC"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["size"] = _size
    env.filters["ago"] = _ago
    env.filters["clock"] = _clock
    return env


class Pages:
    def __init__(self, host: Host, gate: Gatekeeper, actions: Actions, stats: Stats) -> None:
        self.host = host
        self.gate = gate
        self.actions = actions
        self.stats = stats
        self.templates = Jinja2Templates(env=_environment())

    def routes(self) -> list[Route]:
        p = self._page
        return [
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", p(self.logout, post=True), methods=["POST"]),
            Route("/", p(self.dashboard), methods=["GET"]),
            Route("/sessions", p(self.sessions), methods=["GET"]),
            Route("/sessions/{id:int}/kick", p(self.kick, post=True), methods=["POST"]),
            Route("/users", p(self.users), methods=["GET"]),
            Route("/users/new", p(self.new_user), methods=["GET"]),
            Route("/users/new", p(self.add_user, post=True), methods=["POST"]),
            Route("/users/{name}", p(self.edit_user), methods=["GET"]),
            Route("/users/{name}", p(self.save_user, post=True), methods=["POST"]),
            Route("/users/{name}/password", p(self.password, post=True), methods=["POST"]),
            Route("/users/{name}/disable", p(self.disable, post=True), methods=["POST"]),
            Route("/users/{name}/enable", p(self.enable, post=True), methods=["POST"]),
            Route("/users/{name}/delete", p(self.delete, post=True), methods=["POST"]),
            Route("/bans", p(self.bans), methods=["GET"]),
            Route("/bans/lift", p(self.lift, post=True), methods=["POST"]),
        ]

    # --- plumbing --------------------------------------------------------------------------

    def _page(self, handler: Any, *, post: bool = False) -> Any:
        async def run(request: Request) -> Response:
            session = await self.gate.session_of(request)
            if session is None:
                return RedirectResponse("/login", status_code=303)
            if post:
                form = await self._form(request)
                if form is None:
                    return self._render(
                        request, session, "error.html", {"message": "The form is too large."}, 413
                    )
                if not same(session.csrf, str(form.get("csrf", ""))):
                    message = {"message": STALE}
                    return self._render(request, session, "error.html", message, 403)
                request.state.form = form
            try:
                response: Response = await handler(request, session)
            except UnknownUser as exc:
                return self._render(request, session, "error.html", {"message": str(exc)}, 404)
            except UserStoreError as exc:
                return self._render(request, session, "error.html", {"message": str(exc)}, 400)
            return response

        return run

    @staticmethod
    async def _form(request: Request) -> FormData | None:
        declared = request.headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > MAX_FORM:
            return None
        return await request.form(max_files=0, max_fields=200)

    def _render(
        self,
        request: Request,
        session: WebSession | None,
        name: str,
        context: dict[str, Any],
        status: int = 200,
    ) -> HTMLResponse:
        done, what = request.query_params.get("done"), request.query_params.get("what", "")
        notice = NOTICES[done].format(what[:200]) if done in NOTICES else None
        base = {
            "admin": session.admin if session else None,
            "csrf": session.csrf if session else "",
            "notice": notice,
            "path": request.url.path,
        }
        return self.templates.TemplateResponse(
            request, name, {**base, **context}, status_code=status
        )

    @staticmethod
    def _back(path: str, done: str, what: object) -> RedirectResponse:
        from urllib.parse import urlencode

        return RedirectResponse(f"{path}?{urlencode({'done': done, 'what': str(what)})}", 303)

    # --- login -----------------------------------------------------------------------------

    async def login_form(
        self, request: Request, *, error: str | None = None, status: int = 200
    ) -> Response:
        import secrets

        token = secrets.token_urlsafe(32)
        response = self._render(
            request, None, "login.html", {"login_csrf": token, "error": error}, status
        )
        response.set_cookie(
            self.gate.pre_cookie,
            token,
            max_age=600,
            httponly=True,
            samesite="strict",
            secure=self.gate.secure,
        )
        return response

    async def login(self, request: Request) -> Response:
        form = await self._form(request)
        if form is None:
            return await self.login_form(request, error="The form is too large.", status=413)
        if not same(request.cookies.get(self.gate.pre_cookie), str(form.get("csrf", ""))):
            return await self.login_form(
                request,
                error="The form's security token is missing or stale; try again.",
                status=403,
            )
        try:
            admin = await self.gate.login(
                peer_key(request), str(form.get("name", "")), str(form.get("password", ""))
            )
        except Refused as exc:
            return await self.login_form(request, error=str(exc), status=429)
        if admin is None:
            return await self.login_form(request, error="Wrong name or password.", status=401)
        key, _ = self.gate.open_session(admin)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            self.gate.cookie,
            key,
            httponly=True,
            samesite="strict",
            secure=self.gate.secure,
            path="/",
        )
        response.delete_cookie(
            self.gate.pre_cookie, httponly=True, samesite="strict", secure=self.gate.secure
        )
        return response

    async def logout(self, request: Request, session: WebSession) -> Response:
        self.gate.close_session(request.cookies.get(self.gate.cookie))
        log.info("admin=%s logged out", session.admin)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(
            self.gate.cookie, httponly=True, samesite="strict", secure=self.gate.secure
        )
        return response

    # --- dashboard and sessions ------------------------------------------------------------

    async def dashboard(self, request: Request, session: WebSession) -> Response:
        status = views.status(self.host, self.stats)
        minutes = status["per_minute"]
        assert isinstance(minutes, list)
        peak = max([1, *(max(m["up"], m["down"]) for m in minutes)])
        transfers = [views.transfer(t) for t in self.host.live.transfers()]
        return self._render(
            request,
            session,
            "dashboard.html",
            {"status": status, "minutes": minutes, "peak": peak, "transfers": transfers},
        )

    async def sessions(self, request: Request, session: WebSession) -> Response:
        rows = [views.session(s) for s in self.host.live.sessions()]
        return self._render(request, session, "sessions.html", {"sessions": rows})

    async def kick(self, request: Request, session: WebSession) -> Response:
        session_id = request.path_params["id"]
        done = await self.actions.kick(session.admin, session_id)
        return self._back("/sessions", "kicked" if done else "gone", session_id)

    # --- bans ------------------------------------------------------------------------------

    async def bans(self, request: Request, session: WebSession) -> Response:
        rows = [views.ban(b) for b in self.host.bans.bans()]
        return self._render(request, session, "bans.html", {"bans": rows})

    async def lift(self, request: Request, session: WebSession) -> Response:
        address = str(request.state.form.get("address", ""))[:100]
        done = self.actions.lift(session.admin, address)
        return self._back("/bans", "lifted" if done else "notbanned", address)

    # --- users -----------------------------------------------------------------------------

    async def users(self, request: Request, session: WebSession) -> Response:
        query = request.query_params.get("q", "")[:100]
        now = time.time()
        rows = []
        for u in await self.host.users.list():
            a = u.account
            if (
                query
                and query.lower() not in a.name.lower()
                and query.lower() not in a.home.lower()
            ):
                continue
            rows.append(views.user(u, await self.host.usage(a), now))
        return self._render(request, session, "users.html", {"users": rows, "q": query})

    def _form_page(
        self,
        request: Request,
        session: WebSession,
        values: dict[str, Any],
        *,
        adding: bool,
        errors: dict[str, str] | None = None,
        status: int = 200,
        password: str | None = None,
    ) -> HTMLResponse:
        context = {
            "values": values,
            "errors": errors or {},
            "adding": adding,
            "letters": LETTERS,
            "password": password,
        }
        return self._render(request, session, "user_form.html", context, status)

    @staticmethod
    def _values(account: Account) -> dict[str, Any]:
        """An account as the form shows it (text areas one rule per line)."""
        return {
            "name": account.name,
            "home": account.home,
            "permissions": account.permissions,
            "folder_permissions": "\n".join(
                f"{r.path}={r.permissions}" for r in account.folder_permissions
            ),
            "virtual_folders": "\n".join(
                f"{f.path}={f.source}{':ro' if f.read_only else ''}"
                for f in account.virtual_folders
            ),
            "quota_bytes": str(account.quota_bytes),
            "quota_files": str(account.quota_files),
            "max_sessions": str(account.max_sessions),
            "upload_rate": str(account.upload_rate),
            "download_rate": str(account.download_rate),
            "allowed_networks": "\n".join(account.allowed_networks),
            "expires": "never"
            if account.expires is None
            else fields.format_expiry(account.expires),
            "disabled": account.disabled,
        }

    @staticmethod
    def _submitted(form: FormData) -> dict[str, Any]:
        values: dict[str, Any] = {
            k: str(v) for k, v in form.items() if k not in ("csrf", "perm", "password")
        }
        values["permissions"] = "".join(str(p) for p in form.getlist("perm"))
        values["disabled"] = form.get("disabled") == "on"
        return values

    async def new_user(self, request: Request, session: WebSession) -> Response:
        return self._form_page(request, session, {"permissions": "elr"}, adding=True)

    async def add_user(self, request: Request, session: WebSession) -> Response:
        form = request.state.form
        data = form_to_fields(form, [str(p) for p in form.getlist("perm")])
        data["password"] = str(form.get("password", ""))
        try:
            user, password = await self.actions.add_user(session.admin, data)
        except Invalid as exc:
            return self._form_page(
                request, session, self._submitted(form), adding=True, errors=exc.errors, status=400
            )
        if password is not None:
            return self._form_page(
                request, session, self._values(user.account), adding=False, password=password
            )
        return self._back("/users", "added", user.account.name)

    async def edit_user(self, request: Request, session: WebSession) -> Response:
        user = await self.host.users.get(request.path_params["name"])
        values = self._values(user.account)
        usage = await self.host.usage(user.account)
        values["usage"] = None if usage is None else {"bytes": usage.bytes, "files": usage.files}
        return self._form_page(request, session, values, adding=False)

    async def save_user(self, request: Request, session: WebSession) -> Response:
        name = request.path_params["name"]
        form = request.state.form
        data = form_to_fields(form, [str(p) for p in form.getlist("perm")])
        data.pop("name", None)
        try:
            await self.actions.update_user(session.admin, name, data)
        except Invalid as exc:
            values = {**self._submitted(form), "name": name}
            return self._form_page(
                request, session, values, adding=False, errors=exc.errors, status=400
            )
        return self._back("/users", "updated", name)

    async def password(self, request: Request, session: WebSession) -> Response:
        name = request.path_params["name"]
        form = request.state.form
        try:
            generated = await self.actions.set_password(
                session.admin, name, str(form.get("password", ""))
            )
        except Invalid as exc:
            user = await self.host.users.get(name)
            return self._form_page(
                request,
                session,
                self._values(user.account),
                adding=False,
                errors=exc.errors,
                status=400,
            )
        if generated is not None:
            user = await self.host.users.get(name)
            return self._form_page(
                request, session, self._values(user.account), adding=False, password=generated
            )
        return self._back("/users", "password", name)

    async def disable(self, request: Request, session: WebSession) -> Response:
        name = request.path_params["name"]
        await self.actions.set_disabled(session.admin, name, True)
        return self._back("/users", "disabled", name)

    async def enable(self, request: Request, session: WebSession) -> Response:
        name = request.path_params["name"]
        await self.actions.set_disabled(session.admin, name, False)
        return self._back("/users", "enabled", name)

    async def delete(self, request: Request, session: WebSession) -> Response:
        name = request.path_params["name"]
        await self.actions.delete_user(session.admin, name)
        return self._back("/users", "deleted", name)
