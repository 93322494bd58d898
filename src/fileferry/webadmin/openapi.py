"""The OpenAPI 3.1 description of the REST API (``/api/v1/openapi.json``).

Written out rather than generated: the API is small, and a hand-kept
document says what each call is for, which a generator cannot.
"""

from __future__ import annotations

from typing import Any

from fileferry.webadmin.version import version

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    words = {
        400: "bad input (a message, and the fields at fault)",
        401: "no or wrong token",
        403: "missing X-CSRF-Token with a cookie",
        404: "no such object",
    }
    return {str(c): _json(_ERROR, words[c]) for c in (401, *codes)}


def _op(summary: str, ok: dict[str, Any], *codes: int, body: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**ok, **_errors(*codes)}}
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    return op


def _list(name: str) -> dict[str, Any]:
    return {
        "200": _json({"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}}, "OK")
    }


_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_NO_CONTENT = {"204": {"description": "done"}}

_ACCOUNT_FIELDS: dict[str, Any] = {
    "home": {"type": "string", "description": "the user's root folder (made if missing on add)"},
    "permissions": {"type": "string", "description": "letters from elradfmwMTX"},
    "folder_permissions": {"type": "object", "additionalProperties": {"type": "string"}},
    "virtual_folders": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "source": {"type": "string"},
                "read_only": {"type": "boolean"},
            },
            "required": ["path", "source"],
        },
    },
    "quota_bytes": {"type": ["integer", "string"], "description": "bytes, or 500M, 10G"},
    "quota_files": {"type": "integer"},
    "max_sessions": {"type": "integer"},
    "upload_rate": {"type": ["integer", "string"]},
    "download_rate": {"type": ["integer", "string"]},
    "allowed_networks": {"type": "array", "items": {"type": "string"}},
    "expires": {"type": ["string", "null"], "description": "2025-12-31, a date-time, or never"},
    "disabled": {"type": "boolean"},
}


_STORAGE: dict[str, Any] = {
    "type": "object",
    "description": (
        "the served root's usage. kind disk: used and total bytes, measured at the request."
        " kind bucket: used bytes and objects under the prefix (total is null: an object"
        " store has no capacity), counted by a listing in the background every"
        " interval_seconds, never at the request; measured_at and age_seconds say how old"
        " the figure is. Only the root is measured, not homes or virtual folders elsewhere."
    ),
    "properties": {
        "kind": {"enum": ["disk", "bucket"]},
        "location": {"type": "string", "description": "the root: a folder, or s3://BUCKET/PREFIX"},
        "state": {
            "enum": ["ok", "measuring", "stale", "unknown"],
            "description": (
                "measuring: the first count runs; stale: the last attempt failed (error) and"
                " the figures are the last good ones; unknown: no figure (error says why)"
            ),
        },
        "used": {"type": ["integer", "null"], "description": "bytes"},
        "total": {"type": ["integer", "null"], "description": "bytes (a disk only)"},
        "objects": {"type": ["integer", "null"], "description": "objects (a bucket only)"},
        "complete": {
            "type": "boolean",
            "description": "false: the count stopped at its time bound; used, objects are at least",
        },
        "measured_at": {
            "type": ["string", "null"],
            "description": "UTC time the measurement began (2025-06-01T12:03:10Z)",
        },
        "age_seconds": {"type": ["number", "null"]},
        "interval_seconds": {"type": ["number", "null"], "description": "a bucket's recount"},
        "error": {"type": ["string", "null"], "description": "why the last attempt failed"},
    },
    "required": ["kind", "state", "used"],
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "fileferry admin API", "version": version()},
        "security": [{"token": []}],
        "paths": {
            "/api/v1/status": {
                "get": _op(
                    "server figures",
                    {"200": _json({"$ref": "#/components/schemas/Status"}, "OK")},
                )
            },
            "/api/v1/sessions": {"get": _op("open control connections", _list("Session"))},
            "/api/v1/sessions/{id}": {
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
                ],
                "delete": _op(
                    "kick: 421, close, abort a running upload", _NO_CONTENT, 400, 403, 404
                ),
            },
            "/api/v1/transfers": {"get": _op("transfers in progress", _list("Transfer"))},
            "/api/v1/users": {
                "get": _op("accounts (?q= searches names and homes)", _list("User")),
                "post": _op(
                    "add an account (password generated and returned if not given)",
                    {"201": _json({"type": "object"}, "added")},
                    400,
                    403,
                    body="NewUser",
                ),
            },
            "/api/v1/users/{name}": {
                "parameters": [_NAME],
                "get": _op(
                    "one account", {"200": _json({"$ref": "#/components/schemas/User"}, "OK")}, 404
                ),
                "patch": _op(
                    "change fields (disabled: true disables)",
                    {"200": _json({"$ref": "#/components/schemas/User"}, "OK")},
                    400,
                    403,
                    404,
                    body="AccountFields",
                ),
                "delete": _op("delete the account (its files are kept)", _NO_CONTENT, 403, 404),
            },
            "/api/v1/users/{name}/password": {
                "parameters": [_NAME],
                "post": _op(
                    "reset the password ({} generates one and returns it once)",
                    {**_NO_CONTENT, "200": _json({"type": "object"}, "the generated password")},
                    400,
                    403,
                    404,
                    body="Password",
                ),
            },
            "/api/v1/bans": {"get": _op("addresses banned now", _list("Ban"))},
            "/api/v1/bans/{address}": {
                "parameters": [
                    {
                        "name": "address",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "delete": _op("lift a ban", _NO_CONTENT, 403, 404),
            },
        },
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}, "fields": {"type": "object"}},
                    "required": ["error"],
                },
                "Session": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "address": {"type": "string"},
                        "user": {"type": ["string", "null"]},
                        "tls": {"enum": ["none", "control", "control+data"]},
                        "idle_seconds": {"type": "number"},
                        "connected_seconds": {"type": "number"},
                        "command": {"type": "string"},
                    },
                },
                "Transfer": {
                    "type": "object",
                    "properties": {
                        "session": {"type": "integer"},
                        "user": {"type": ["string", "null"]},
                        "path": {"type": "string"},
                        "direction": {"enum": ["download", "upload"]},
                        "bytes": {"type": "integer"},
                        "size": {"type": ["integer", "null"]},
                        "percent": {"type": ["number", "null"]},
                        "rate": {"type": "integer", "description": "bytes per second"},
                    },
                },
                "Status": {
                    "type": "object",
                    "properties": {
                        "version": {"type": "string"},
                        "sessions": {"type": "integer"},
                        "transfers": {"type": "integer"},
                        "logins_last_hour": {"type": "integer"},
                        "failed_logins_last_hour": {"type": "integer"},
                        "bans": {"type": "integer"},
                        "disk": {
                            "type": ["object", "null"],
                            "description": "a local root's disk (null for a bucket): see storage",
                            "properties": {
                                "used": {"type": "integer"},
                                "total": {"type": "integer"},
                            },
                        },
                        "storage": {"$ref": "#/components/schemas/Storage"},
                        "per_minute": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "Storage": _STORAGE,
                "Ban": {
                    "type": "object",
                    "properties": {
                        "address": {"type": "string"},
                        "reason": {"type": "string"},
                        "seconds_left": {"type": "number"},
                        "until": {"type": "string"},
                        "times_banned": {"type": "integer"},
                    },
                },
                "AccountFields": {"type": "object", "properties": _ACCOUNT_FIELDS},
                "User": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "status": {"enum": ["enabled", "disabled", "expired"]},
                        **_ACCOUNT_FIELDS,
                    },
                },
                "NewUser": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "password": {"type": "string"},
                        **_ACCOUNT_FIELDS,
                    },
                    "required": ["name", "home"],
                },
                "Password": {"type": "object", "properties": {"password": {"type": "string"}}},
            },
        },
    }
