"""The ``[[hook]]`` tables: programs or URLs told about what happened.

Each table is checked whole when the config is read, so an operator who
misspells an event name, forgets ``command``/``url`` or gives both learns it
from one line at start, not from a hook that silently never runs.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass

from fileferry.config.describe import as_bool, as_number
from fileferry.errors import ConfigError

#: The names ``on`` accepts, each one kind of session event.
HOOK_EVENTS = (
    "upload",
    "download",
    "delete",
    "rename",
    "mkdir",
    "rmdir",
    "login",
    "login-failed",
    "ban",
)

_KEYS = {
    "name",
    "on",
    "command",
    "url",
    "timeout",
    "retries",
    "backoff",
    "before_reply",
    "max_output",
    "env",
    "headers",
    "ca_file",
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Headers the client writes itself; a hook setting them would break the request.
_OWN_HEADERS = frozenset({"host", "content-length", "content-type", "connection"})


@dataclass(frozen=True, slots=True)
class HookConfig:
    """One ``[[hook]]``: what it listens to, what it runs, and how patiently."""

    #: How the log names it (never the URL, which may carry a token).
    name: str
    on: tuple[str, ...]
    #: argv, run without a shell; empty for a URL hook.
    command: tuple[str, ...] = ()
    url: str | None = None
    #: Seconds one attempt may take: then the process group is killed, or
    #: the request abandoned.
    timeout: float = 30.0
    #: Further attempts after a failed one, ``backoff`` seconds apart, doubling.
    retries: int = 0
    backoff: float = 1.0
    #: An upload hook the 226 waits for; failing, it turns the reply into 550.
    before_reply: bool = False
    #: Bytes of the command's output (or the response body) kept for the log.
    max_output: int = 64 * 1024
    #: Extra environment variables for a command hook.
    env: tuple[tuple[str, str], ...] = ()
    #: Extra request headers for a URL hook (a token: never logged).
    headers: tuple[tuple[str, str], ...] = ()
    #: CA bundle to verify an https URL against, instead of the system's.
    ca_file: str | None = None


def hooks_from_toml(items: object, source: str) -> tuple[HookConfig, ...]:
    """``[[hook]]`` tables, each checked whole; the first problem is a ConfigError."""
    if not isinstance(items, list):
        raise ConfigError(f"{source}: [[hook]] must be a list of tables")
    return tuple(_hook(item, f"{source}: hook #{i + 1}", i) for i, item in enumerate(items))


def _hook(item: object, where: str, index: int) -> HookConfig:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = set(item) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    name = item.get("name", f"hook-{index + 1}")
    if not isinstance(name, str) or not name or not name.isprintable() or len(name) > 64:
        raise ConfigError(f"{where}: 'name' must be printable text of 1-64 characters")
    where = f"{where} ({name})"
    on = _events(item.get("on"), where)
    command, url = item.get("command"), item.get("url")
    if command is None and url is None:
        raise ConfigError(f"{where}: give 'command' (a list of strings) or 'url'")
    if command is not None and url is not None:
        raise ConfigError(f"{where}: give 'command' or 'url', not both")
    timeout = float(as_number(f"{where}: timeout", item.get("timeout", 30.0), float))
    if not 0 < timeout <= 3600:
        raise ConfigError(f"{where}: timeout must be between 0 and 3600 seconds")
    retries = int(as_number(f"{where}: retries", item.get("retries", 0 if command else 3), int))
    if not 0 <= retries <= 20:
        raise ConfigError(f"{where}: retries must be between 0 and 20")
    backoff = float(as_number(f"{where}: backoff", item.get("backoff", 1.0), float))
    if not 0 <= backoff <= 600:
        raise ConfigError(f"{where}: backoff must be between 0 and 600 seconds")
    max_output = int(as_number(f"{where}: max_output", item.get("max_output", 65536), int))
    if not 0 <= max_output <= 16 * 1024 * 1024:
        raise ConfigError(f"{where}: max_output must be between 0 and 16 MiB")
    before_reply = as_bool(f"{where}: before_reply", item.get("before_reply", False))
    if before_reply and on != ("upload",):
        raise ConfigError(f'{where}: before_reply is for hooks on ["upload"] alone')
    if command is not None:
        if "headers" in item or "ca_file" in item:
            raise ConfigError(f"{where}: 'headers' and 'ca_file' are for URL hooks")
        return HookConfig(
            name, on, command=_argv(command, where), timeout=timeout, retries=retries,
            backoff=backoff, before_reply=before_reply, max_output=max_output,
            env=_pairs(item.get("env", {}), where, "env", _ENV_NAME),
        )  # fmt: skip
    if "env" in item:
        raise ConfigError(f"{where}: 'env' is for command hooks")
    ca_file = item.get("ca_file")
    if ca_file is not None and (not isinstance(ca_file, str) or not os.path.isfile(ca_file)):
        raise ConfigError(f"{where}: ca_file {ca_file!r} is not a file")
    headers = _pairs(item.get("headers", {}), where, "headers", _HEADER_NAME)
    if any(key.lower() in _OWN_HEADERS for key, _ in headers):
        raise ConfigError(f"{where}: headers may not set {sorted(_OWN_HEADERS)}")
    return HookConfig(
        name, on, url=_url(url, where), timeout=timeout, retries=retries, backoff=backoff,
        before_reply=before_reply, max_output=max_output, headers=headers, ca_file=ca_file,
    )  # fmt: skip


def _events(on: object, where: str) -> tuple[str, ...]:
    if isinstance(on, str):
        on = [on]
    if not isinstance(on, list) or not on or not all(isinstance(e, str) for e in on):
        raise ConfigError(f"{where}: 'on' must be a list of event names: {', '.join(HOOK_EVENTS)}")
    for event in on:
        if event not in HOOK_EVENTS:
            raise ConfigError(
                f"{where}: unknown event {event!r} in 'on' (known: {', '.join(HOOK_EVENTS)})"
            )
    return tuple(dict.fromkeys(on))


def _argv(command: object, where: str) -> tuple[str, ...]:
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(a, str) and "\0" not in a for a in command)
        or not command[0]
    ):
        raise ConfigError(f"{where}: 'command' must be a non-empty list of strings (argv)")
    if not os.path.isabs(command[0]):
        raise ConfigError(f"{where}: command[0] must be an absolute path (no PATH lookup)")
    return tuple(command)


def _url(url: object, where: str) -> str:
    if not isinstance(url, str):
        raise ConfigError(f"{where}: 'url' must be text")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ConfigError(f"{where}: bad url ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: url must be http://HOST/... or https://HOST/...")
    if any(c in url for c in "\r\n\0 "):
        raise ConfigError(f"{where}: url may not contain spaces or control characters")
    return url


def _pairs(
    table: object, where: str, key: str, name_rule: re.Pattern[str]
) -> tuple[tuple[str, str], ...]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: {key!r} must be a table of names to text")
    pairs = []
    for name, value in table.items():
        if not name_rule.fullmatch(name) or not isinstance(value, str):
            raise ConfigError(f"{where}: {key}.{name}: bad name or value (text expected)")
        if any(c in value for c in "\r\n\0"):
            raise ConfigError(f"{where}: {key}.{name}: no line breaks in a value")
        pairs.append((name, value))
    return tuple(pairs)
