"""What a hook is told: an event as a JSON object and as environment variables.

One flat object per event, the same for every hook kind, so a script reads
``path`` or ``user`` whichever event woke it::

    {"event": "upload", "time": "2026-12-03T12:00:00.123Z", "session": 3,
     "peer": "192.0.2.7", "user": "bob", "command": "STOR", "path": "/in/a.csv",
     "size": 1000, "local_path": "/srv/ftp/in/a.csv"}

The environment carries the same keys as ``FILEFERRY_EVENT_<KEY>``
(``FILEFERRY_EVENT`` is the event's name). Every value there is made safe:
no control characters (a file name may hold a newline or an escape
sequence), no undecodable bytes, and a bounded length, so a client cannot
inject lines into a script's output or flood its environment.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from fileferry.observability import events as seen

#: The ``on`` name of each event type that hooks may listen to (downloads: see :func:`kind_of`).
_KINDS: dict[type[seen.SessionEvent], str] = {
    seen.FileUploaded: "upload",
    seen.FileDeleted: "delete",
    seen.Renamed: "rename",
    seen.DirectoryMade: "mkdir",
    seen.DirectoryRemoved: "rmdir",
    seen.LoginSucceeded: "login",
    seen.LoginFailed: "login-failed",
    seen.Banned: "ban",
}
#: Longest value put in one environment variable.
MAX_ENV_VALUE = 4096
_UNSAFE = {c: "?" for c in [*range(0x20), *range(0x7F, 0xA0)]}


def kind_of(event: seen.SessionEvent) -> str | None:
    """The hook event name of ``event``, or ``None`` if no hook can listen to it.

    A download is a RETR answered 226: listings and failed transfers are
    not files someone received.
    """
    if type(event) is seen.TransferFinished:
        if event.command == "RETR" and event.reply_code == 226:
            return "download"
        return None
    return _KINDS.get(type(event))


def payload(kind: str, event: seen.SessionEvent) -> dict[str, Any]:
    """The JSON object for ``event``: who and when, then the event's own fields."""
    origin = event.origin
    stamp = dt.datetime.fromtimestamp(event.at, dt.UTC).isoformat(timespec="milliseconds")
    body: dict[str, Any] = {
        "event": kind,
        "time": stamp.replace("+00:00", "Z"),
        "session": origin.session,
        "peer": origin.peer,
        "user": origin.user,
    }
    for f in dataclasses.fields(event):
        if f.name not in ("origin", "at"):
            body[f.name] = getattr(event, f.name)
    return body


def encode(body: dict[str, Any]) -> bytes:
    """The JSON text of ``body``; ASCII only, so any path survives any reader."""
    return json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def safe_text(value: str, limit: int) -> str:
    """``value`` without control characters or lone surrogates, at most ``limit`` long."""
    text = value.encode("utf-8", "replace").decode("utf-8").translate(_UNSAFE)
    return text[:limit]


def environment(body: dict[str, Any]) -> dict[str, str]:
    """``FILEFERRY_EVENT`` and ``FILEFERRY_EVENT_<KEY>`` for each field of ``body``."""
    env = {"FILEFERRY_EVENT": str(body["event"])}
    for key, value in body.items():
        if key == "event":
            continue
        if value is None:
            text = ""
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = value
        elif isinstance(value, int | float):
            text = str(value)
        else:
            text = json.dumps(value, ensure_ascii=True)
        env[f"FILEFERRY_EVENT_{key.upper()}"] = safe_text(text, MAX_ENV_VALUE)
    return env


def first_line(output: bytes, limit: int = 200) -> str:
    """The first non-blank line of a hook's output, safe to put in an FTP reply."""
    for line in output.decode("utf-8", "replace").splitlines():
        text = safe_text(line.strip(), limit).strip()
        if text:
            return text
    return ""
