"""The REST API: ``/api/v1/{status,sessions,transfers,users,bans}`` and its OpenAPI file.

JSON in and out. Authenticated by ``Authorization: Bearer TOKEN`` (tokens from
``fileferry admin token NAME``) or by the web session's cookie plus the
``X-CSRF-Token`` header on unsafe methods (the dashboard's own fetches).
Bad input is a 400 with a message (and ``fields`` for form-like bodies),
never a 500: every body is size-capped, must be a JSON object, and goes
through the same validation as the pages and ``fileferry user``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fileferry.errors import ConfigError
from fileferry.users.base import UnknownUser, UserStoreError
from fileferry.webadmin import views
from fileferry.webadmin.actions import Invalid
from fileferry.webadmin.openapi import document

if TYPE_CHECKING:
    from starlette.requests import Request

    from fileferry.webadmin.actions import Actions
    from fileferry.webadmin.auth import Gatekeeper, Principal
    from fileferry.webadmin.model import Host
    from fileferry.webadmin.stats import Stats

#: The largest request body the API reads.
MAX_BODY = 64 * 1024
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})

Endpoint = Callable[["Request", "Principal"], Awaitable[Response]]


class BadRequest(Exception):
    pass


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object, at most :data:`MAX_BODY` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise BadRequest(f"the body may be at most {MAX_BODY} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadRequest(f"the body may be at most {MAX_BODY} bytes")
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


class API:
    def __init__(self, host: Host, gate: Gatekeeper, actions: Actions, stats: Stats) -> None:
        self.host = host
        self.gate = gate
        self.actions = actions
        self.stats = stats

    def _guard(self, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            principal = await self.gate.principal(request)
            if principal is None:
                response = error(401, "authentication required: Authorization: Bearer TOKEN")
                response.headers["WWW-Authenticate"] = 'Bearer realm="fileferry"'
                return response
            if request.method not in _SAFE and not self.gate.csrf_ok(
                principal, request.headers.get("x-csrf-token")
            ):
                return error(403, "missing or wrong X-CSRF-Token header")
            try:
                return await endpoint(request, principal)
            except BadRequest as exc:
                return error(400, str(exc))
            except Invalid as exc:
                return error(400, str(exc), fields=exc.errors)
            except UnknownUser as exc:
                return error(404, str(exc))
            except (ConfigError, UserStoreError) as exc:
                return error(400, str(exc))

        return run

    def routes(self) -> list[Route]:
        g = self._guard
        return [
            Route("/api/v1/openapi.json", self.openapi, methods=["GET"]),
            Route("/api/v1/status", g(self.status), methods=["GET"]),
            Route("/api/v1/sessions", g(self.sessions), methods=["GET"]),
            Route("/api/v1/sessions/{id}", g(self.kick), methods=["DELETE"]),
            Route("/api/v1/transfers", g(self.transfers), methods=["GET"]),
            Route("/api/v1/users", g(self.users), methods=["GET"]),
            Route("/api/v1/users", g(self.add_user), methods=["POST"]),
            Route("/api/v1/users/{name}", g(self.user), methods=["GET"]),
            Route("/api/v1/users/{name}", g(self.update_user), methods=["PATCH"]),
            Route("/api/v1/users/{name}", g(self.delete_user), methods=["DELETE"]),
            Route("/api/v1/users/{name}/password", g(self.password), methods=["POST"]),
            Route("/api/v1/bans", g(self.bans), methods=["GET"]),
            Route("/api/v1/bans/{address:path}", g(self.lift), methods=["DELETE"]),
        ]

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(document())

    async def status(self, request: Request, who: Principal) -> Response:
        return JSONResponse(views.status(self.host, self.stats))

    async def sessions(self, request: Request, who: Principal) -> Response:
        return JSONResponse([views.session(s) for s in self.host.live.sessions()])

    async def kick(self, request: Request, who: Principal) -> Response:
        raw = request.path_params["id"]
        if not raw.isdigit():
            raise BadRequest(f"session id {raw!r} is not a number")
        if not await self.actions.kick(who.admin, int(raw)):
            return error(404, f"no session {raw}")
        return Response(status_code=204)

    async def transfers(self, request: Request, who: Principal) -> Response:
        return JSONResponse([views.transfer(t) for t in self.host.live.transfers()])

    async def users(self, request: Request, who: Principal) -> Response:
        query = request.query_params.get("q", "").lower()
        now = time.time()
        out = []
        for u in await self.host.users.list():
            if (
                query
                and query not in u.account.name.lower()
                and query not in u.account.home.lower()
            ):
                continue
            out.append(views.user(u, await self.host.usage(u.account), now))
        return JSONResponse(out)

    async def user(self, request: Request, who: Principal) -> Response:
        u = await self.host.users.get(request.path_params["name"])
        return JSONResponse(views.user(u, await self.host.usage(u.account), time.time()))

    async def add_user(self, request: Request, who: Principal) -> Response:
        body = await read_json(request)
        if "home" not in body or "name" not in body:
            raise Invalid({k: "required" for k in ("name", "home") if k not in body})
        user, password = await self.actions.add_user(who.admin, body)
        data: dict[str, object] = {"user": views.user(user, None, time.time())}
        if password is not None:
            data["password"] = password
        return JSONResponse(data, status_code=201)

    async def update_user(self, request: Request, who: Principal) -> Response:
        body = await read_json(request)
        if "password" in body:
            raise Invalid({"password": "set it with POST /api/v1/users/NAME/password"})
        user = await self.actions.update_user(who.admin, request.path_params["name"], body)
        return JSONResponse(views.user(user, None, time.time()))

    async def delete_user(self, request: Request, who: Principal) -> Response:
        await self.actions.delete_user(who.admin, request.path_params["name"])
        return Response(status_code=204)

    async def password(self, request: Request, who: Principal) -> Response:
        body = await read_json(request)
        unknown = set(body) - {"password"}
        if unknown:
            raise Invalid({k: "unknown field" for k in sorted(unknown)})
        generated = await self.actions.set_password(
            who.admin, request.path_params["name"], body.get("password")
        )
        if generated is None:
            return Response(status_code=204)
        return JSONResponse({"password": generated})

    async def bans(self, request: Request, who: Principal) -> Response:
        return JSONResponse([views.ban(b) for b in self.host.bans.bans()])

    async def lift(self, request: Request, who: Principal) -> Response:
        address = request.path_params["address"]
        if not self.actions.lift(who.admin, address):
            return error(404, f"{address} is not banned")
        return Response(status_code=204)
