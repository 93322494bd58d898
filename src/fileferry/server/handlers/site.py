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
from fileferry.observability import events as seen
from fileferry.protocol import events
from fileferry.protocol.commands import SITE_COMMANDS, permission
from fileferry.protocol.replies import Reply
from fileferry.server.handlers.chmod import site_chmod
from fileferry.server.handlers.space import site_quota

if TYPE_CHECKING:
    from fileferry.server.context import Handler, Outcome, SessionContext

#: The permission letter for SITE EXEC (``X``, a fileferry extension to pyftpdlib's
#: set), from the command table.
EXEC_PERMISSION = permission("EXEC")
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


async def site_exec(ctx: SessionContext, ev: events.SiteCommand) -> Reply:
    account = ctx.account
    if account is None or not account.permits(EXEC_PERMISSION, ev.cwd):
        return Reply(550, "Permission denied.")
    commands = {c.name: c for c in ctx.config.site_exec}
    words = ev.arg.split()
    if not words:
        names = sorted(commands)
        return Reply(214, "SITE EXEC commands:", tuple(names), "End.")
    command = commands.get(words[0].lower())
    if command is None:
        return Reply(550, "Unknown SITE EXEC command.")
    args = words[1:]
    try:
        check_arguments(command, args)
    except ExecRefused as exc:
        ctx.emit(seen.SiteExecRefused(ctx.origin, command.name, str(exc)))
        return Reply(501, f"Refused: {exc}")
    home = account.home if os.path.isdir(account.home) else ctx.config.storage.root
    ctx.emit(seen.SiteExecStarted(ctx.origin, command.name, tuple(args)))
    try:
        status, output, truncated = await run_command(
            [*command.argv, *args], home, command.timeout, command.max_output
        )
    except OSError:
        return Reply(451, f"Cannot start {command.name}.")
    lines = _render(output)
    if truncated:
        lines.append(f"[output truncated at {command.max_output} bytes]")
    if not lines:
        lines.append("(no output)")  # keeps the reply multi-line, footer included
    if status is None:
        footer = f"{command.name} timed out after {command.timeout:g} s and was killed."
        return Reply(451, f"Output of {command.name}:", tuple(lines), footer)
    return Reply(200, f"Output of {command.name}:", tuple(lines), f"Exit status {status}.")


SITE_HANDLERS: dict[str, Handler] = {"EXEC": site_exec, "QUOTA": site_quota, "CHMOD": site_chmod}
# Every row of the SITE table has a handler here, and nothing else does.
assert SITE_HANDLERS.keys() == SITE_COMMANDS.keys()


async def site_command(ctx: SessionContext, ev: events.SiteCommand) -> Outcome:
    handler = SITE_HANDLERS.get(ev.command)
    if handler is None:  # pragma: no cover - the core only emits registered names
        return Reply(501, "Unknown SITE command.")
    return await handler(ctx, ev)


HANDLERS: dict[type[events.Event], Handler] = {events.SiteCommand: site_command}
