"""SITE subcommands the server implements; today SITE EXEC.

SITE EXEC is the tutorials' "run a command the client sent" idea in a form
an operator can trust:

* only names the operator mapped to an argv list in the config can run,
  and only for users given the ``X`` permission (``site_exec = true``);
* the program is started directly with ``exec`` (argv, never a shell), so
  ``;``, ``|``, ``$()`` and friends are plain characters;
* each client argument must match the operator's pattern for its position,
  and is refused anyway if it could act as an option (``-x``), climbs
  directories (``..``) or holds control characters;
* it runs in the user's home with an almost empty environment, a timeout
  (after which the whole process group is killed) and an output cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from typing import TYPE_CHECKING

from fileferry.config import SiteExecCommand
from fileferry.protocol import events
from fileferry.protocol.replies import Reply
from fileferry.server.handlers.chmod import site_chmod
from fileferry.server.handlers.space import site_quota

if TYPE_CHECKING:
    from fileferry.server.control import ControlConnection

#: The permission letter for SITE EXEC (a fileferry extension to pyftpdlib's set).
EXEC_PERMISSION = "X"
_MAX_ARGS = 16
_MAX_LINE_CHARS = 400
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


class ExecRefused(Exception):
    """The request breaks a rule; the message is safe to show the client."""


def check_arguments(command: SiteExecCommand, args: list[str]) -> None:
    """Raise :class:`ExecRefused` unless every argument is allowed."""
    if len(args) > min(len(command.arg_patterns), _MAX_ARGS):
        raise ExecRefused(f"{command.name} accepts at most {len(command.arg_patterns)} arguments.")
    for i, arg in enumerate(args):
        if any(ord(c) < 32 or ord(c) == 127 for c in arg):
            raise ExecRefused(f"Argument {i + 1} holds control characters.")
        if arg.startswith("-"):
            raise ExecRefused(f"Argument {i + 1} looks like an option.")
        if ".." in arg.replace("\\", "/").split("/"):
            raise ExecRefused(f"Argument {i + 1} climbs directories.")
        if not re.fullmatch(command.arg_patterns[i], arg):
            raise ExecRefused(f"Argument {i + 1} is not allowed.")


async def run_command(
    argv: list[str], cwd: str, timeout: float, max_output: int
) -> tuple[int | None, bytes, bool]:
    """Run ``argv``; return (exit status or None if killed, output, truncated)."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=_ENV,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a kill gets its children too
    )
    assert proc.stdout is not None
    output = bytearray()
    truncated = False
    killed = False
    try:
        async with asyncio.timeout(timeout):
            while chunk := await proc.stdout.read(65536):
                room = max_output - len(output)
                output += chunk[:room]
                if len(chunk) > room:
                    truncated = True
                    break
            if not truncated:
                await proc.wait()
    except TimeoutError:
        killed = True
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    return (None if killed else proc.returncode), bytes(output), truncated


def _render(output: bytes) -> list[str]:
    text = output.decode("utf-8", "replace")
    lines = []
    for line in text.splitlines():
        clean = "".join(c if c.isprintable() or c == "\t" else "?" for c in line)
        lines.append(clean[:_MAX_LINE_CHARS])
    return lines


async def site_exec(conn: ControlConnection, ev: events.SiteCommand) -> None:
    account = conn.account
    if account is None or not account.permits(EXEC_PERMISSION, ev.cwd):
        conn.reply(Reply(550, "Permission denied."), ev)
        return
    commands = {c.name: c for c in conn.app.config.site_exec}
    words = ev.arg.split()
    if not words:
        names = sorted(commands)
        conn.reply(Reply(214, "SITE EXEC commands:", tuple(names), "End."), ev)
        return
    command = commands.get(words[0].lower())
    if command is None:
        conn.reply(Reply(550, "Unknown SITE EXEC command."), ev)
        return
    args = words[1:]
    try:
        check_arguments(command, args)
    except ExecRefused as exc:
        conn.log_event("site-exec-refused", name=command.name, reason=str(exc))
        conn.reply(Reply(501, f"Refused: {exc}"), ev)
        return
    home = account.home if os.path.isdir(account.home) else conn.app.config.storage.root
    conn.log_event("site-exec", name=command.name, args=args)
    try:
        status, output, truncated = await run_command(
            [*command.argv, *args], home, command.timeout, command.max_output
        )
    except OSError:
        conn.reply(Reply(451, f"Cannot start {command.name}."), ev)
        return
    lines = _render(output)
    if truncated:
        lines.append(f"[output truncated at {command.max_output} bytes]")
    if not lines:
        lines.append("(no output)")  # keeps the reply multi-line, footer included
    if status is None:
        footer = f"{command.name} timed out after {command.timeout:g} s and was killed."
        conn.reply(Reply(451, f"Output of {command.name}:", tuple(lines), footer), ev)
        return
    conn.reply(Reply(200, f"Output of {command.name}:", tuple(lines), f"Exit status {status}."), ev)


SITE_HANDLERS = {"EXEC": site_exec, "QUOTA": site_quota, "CHMOD": site_chmod}


async def site_command(conn: ControlConnection, ev: events.SiteCommand) -> None:
    handler = SITE_HANDLERS.get(ev.command)
    if handler is None:  # pragma: no cover - the core only emits registered names
        conn.reply(Reply(501, "Unknown SITE command."), ev)
        return
    await handler(conn, ev)


HANDLERS = {events.SiteCommand: site_command}
