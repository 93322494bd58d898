"""Run a command hook: argv without a shell, the event on stdin and in the environment.

The process starts in a session of its own, so that at the timeout (or at
shutdown) the whole group is killed, children included: a hook that runs
``clamscan`` which hangs does not leave it behind. Its output is read as it
comes and only the first ``max_output`` bytes are kept, so a hook printing
megabytes costs a loop of reads, never memory.

The environment is built, not inherited: a few variables programs expect
(``PATH``, ``HOME``, the locale, ``TZ``, ``TMPDIR``), the hook's own ``env``,
and the event's ``FILEFERRY_EVENT_*``. The server's environment may hold a
database URL with a password or a cloud key: a hook gets none of it unless the
operator names it in ``env``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

from fileferry.config.hooks import HookConfig
from fileferry.observability.hooks.outcome import Outcome
from fileferry.observability.hooks.payload import first_line

#: Inherited from the server's environment, if set; nothing else is.
PASSED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
_READ = 65536
#: After the process ended, how long its output may take to reach EOF
#: (a grandchild may still hold the pipe): then the group is killed.
_AFTER_EXIT = 2.0


def base_environment(hook: HookConfig) -> dict[str, str]:
    """The variables every run of ``hook`` gets before the event's own."""
    env = {k: v for k in PASSED_VARIABLES if (v := os.environ.get(k)) is not None}
    env.update(hook.env)
    return env


async def run_command(hook: HookConfig, body: bytes, env: dict[str, str]) -> Outcome:
    """One attempt of ``hook``; never raises but for cancellation (which kills it too)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *hook.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        return Outcome(False, summary=f"cannot start {hook.command[0]!r}: {exc.strerror}")
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    loop = asyncio.get_running_loop()
    cap = hook.max_output
    tasks = [
        loop.create_task(_feed(proc.stdin, body)),
        loop.create_task(_capture(proc.stdout, cap)),
        loop.create_task(_capture(proc.stderr, cap)),
    ]
    started = time.monotonic()
    try:
        try:
            async with asyncio.timeout(hook.timeout):
                code = await proc.wait()
        except TimeoutError:
            _kill_group(proc.pid)
            return Outcome(
                False,
                retry=True,
                summary=f"timed out after {hook.timeout:g} s; process group killed",
                message="the upload check did not finish in time",
            )
        left = max(0.1, min(_AFTER_EXIT, hook.timeout - (time.monotonic() - started)))
        done, _ = await asyncio.wait(tasks[1:], timeout=left)
        if len(done) < 2:  # a child of the hook holds the pipe open
            _kill_group(proc.pid)
            await asyncio.wait(tasks[1:], timeout=_AFTER_EXIT)
        out, out_dropped = tasks[1].result() if tasks[1].done() else (b"", 0)
        err, err_dropped = tasks[2].result() if tasks[2].done() else (b"", 0)
        output = out + (b"\n" + err if out and err else err)
        message = first_line(out) or first_line(err)
        dropped = out_dropped + err_dropped
        if code == 0:
            return Outcome(True, summary="exit 0", output=output, dropped=dropped)
        summary = f"killed by signal {-code}" if code < 0 else f"exit {code}"
        return Outcome(False, True, summary, output, dropped, message)
    finally:
        if proc.returncode is None:  # cancelled (shutdown) while running
            _kill_group(proc.pid)
        for task in tasks:
            task.cancel()
        for pipe in (proc.stdout, proc.stderr):
            transport = getattr(pipe, "_transport", None)
            if transport is not None:
                transport.close()
        with contextlib.suppress(Exception):
            proc.stdin.close()
        if proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_AFTER_EXIT):
                    await proc.wait()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _feed(stdin: asyncio.StreamWriter, body: bytes) -> None:
    """Write the event and close stdin; a hook that does not read it is fine."""
    with contextlib.suppress(ConnectionError, BrokenPipeError, OSError):
        stdin.write(body)
        await stdin.drain()
        stdin.close()


async def _capture(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, int]:
    """The first ``cap`` bytes of ``stream`` and how many more were read and dropped."""
    kept = bytearray()
    dropped = 0
    while chunk := await stream.read(_READ):
        room = cap - len(kept)
        if room > 0:
            kept += chunk[:room]
        dropped += max(0, len(chunk) - max(room, 0))
    return bytes(kept), dropped
