"""The ``[[hook]]`` observer: a bounded queue, a cap on runs at once, retries, one log line.

Hooks are observers (:mod:`fileferry.observability.dispatch`), so they only
ever see events after the reply that produced them went out; and the
observer itself only queues: the runs happen in tasks, at most
``max_running`` at once, so a hook that hangs holds a slot until its timeout,
never the loop or a session. A full queue drops the event and says so in
the log (once per overflow, then how many were lost when room returns):
the server never blocks on, or grows memory for, a hook that cannot keep up.

A failed run is retried (``retries`` more attempts, ``backoff`` seconds
apart, doubling); only when the last attempt failed is the failure logged,
one warning line per event and hook, with what the hook printed.

The exception is an upload hook with ``before_reply``: :meth:`check_upload`
runs it while the 226 waits (no retry: the client is waiting), and its
refusal becomes the 550 the client sees. Those runs have a cap of their own,
so asynchronous hooks that hang cannot starve the upload checks, nor the
reverse.

Each server (each worker) has its own runner: the caps are per worker.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Sequence

from fileferry.config.hooks import HookConfig
from fileferry.config.model import HookLimits
from fileferry.observability import events as seen
from fileferry.observability.hooks.command import base_environment, run_command
from fileferry.observability.hooks.outcome import Outcome
from fileferry.observability.hooks.payload import encode, environment, kind_of, payload
from fileferry.observability.hooks.webhook import make_context, post_event, shown

log = logging.getLogger("fileferry.hooks")

#: Longest pause between two attempts, whatever the doubling says.
MAX_BACKOFF = 300.0
#: At shutdown, how long queued and running hooks may take before they are cancelled.
DRAIN_WAIT = 5.0
#: The reply text of a refused upload when the hook said nothing.
REFUSED = "Upload refused by the server's check."

_Item = tuple[HookConfig, str, seen.SessionEvent]


class HookRunner:
    """Runs the configured hooks for the events they listen to."""

    def __init__(self, hooks: Sequence[HookConfig], limits: HookLimits) -> None:
        by_kind: dict[str, list[HookConfig]] = {}
        for hook in hooks:
            if hook.before_reply:
                continue
            for kind in hook.on:
                by_kind.setdefault(kind, []).append(hook)
        self._by_kind = {kind: tuple(found) for kind, found in by_kind.items()}
        #: ``before_reply`` upload hooks, in the order of the config.
        self.gates: tuple[HookConfig, ...] = tuple(h for h in hooks if h.before_reply)
        self._max_running = limits.max_running
        self._max_queued = limits.queue
        self._queue: deque[_Item] = deque()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._gate_slots = asyncio.Semaphore(limits.max_running)
        self._contexts: dict[int, ssl.SSLContext | None] = {}
        self._envs = {id(h): base_environment(h) for h in hooks if h.command}
        #: Events dropped because the queue was full (all time; and this overflow).
        self.dropped = 0
        self._dropping = 0

    # -- the observer ------------------------------------------------------------

    def __call__(self, event: seen.SessionEvent) -> None:
        kind = kind_of(event)
        if kind is None:
            return
        hooks = self._by_kind.get(kind)
        if not hooks:
            return
        for hook in hooks:
            if len(self._queue) >= self._max_queued:
                self.dropped += 1
                if not self._dropping:
                    log.warning(
                        "hook queue full (%d waiting): dropping %s events until it drains",
                        len(self._queue),
                        kind,
                    )
                self._dropping += 1
                continue
            self._queue.append((hook, kind, event))
        self._pump()

    def _pump(self) -> None:
        if self._dropping and len(self._queue) < self._max_queued:
            log.warning("hook queue has room again; %d hook run(s) were dropped", self._dropping)
            self._dropping = 0
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # the loop is gone (after shutdown): nothing can run them
            if self._queue:
                log.warning("no event loop: %d hook run(s) dropped", len(self._queue))
                self._queue.clear()
            return
        while self._running < self._max_running and self._queue:
            item = self._queue.popleft()
            self._running += 1
            task = loop.create_task(self._work(item))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _work(self, item: _Item) -> None:
        """Run ``item``, then whatever else waits, while there is any."""
        try:
            while True:
                try:
                    await self._run_async(*item)
                except Exception:  # a bug here must not stop the queue
                    log.exception("hook %s on %s: unexpected error", item[0].name, item[1])
                if not self._queue:
                    return
                item = self._queue.popleft()
                if self._dropping and len(self._queue) < self._max_queued:
                    self._pump()
        finally:
            self._running -= 1

    async def _run_async(self, hook: HookConfig, kind: str, event: seen.SessionEvent) -> None:
        body = payload(kind, event)
        outcome = Outcome(False)
        attempts = 1 + hook.retries
        for attempt in range(attempts):
            outcome = await self._attempt(hook, body)
            if outcome.ok or not outcome.retry or attempt + 1 == attempts:
                break
            await asyncio.sleep(min(MAX_BACKOFF, hook.backoff * 2**attempt))
        if outcome.ok:
            self._log_output(hook, kind, event, outcome)
        else:
            self._log_failure(hook, kind, event, outcome, attempts if outcome.retry else None)

    # -- before the 226 ----------------------------------------------------------

    async def check_upload(self, event: seen.FileUploaded) -> str | None:
        """Run the ``before_reply`` hooks on a committed upload: ``None`` to accept it,
        else the (safe, one-line) reason the 550 gives."""
        for hook in self.gates:
            body = payload("upload", event)
            try:
                async with asyncio.timeout(hook.timeout):
                    await self._gate_slots.acquire()
            except TimeoutError:
                log.warning(
                    "hook %s: no free slot within %g s for session=%d path=%r: upload refused",
                    hook.name,
                    hook.timeout,
                    event.origin.session,
                    event.path,
                )
                return "Too many uploads are being checked; try again later."
            try:
                outcome = await self._attempt(hook, body)
            finally:
                self._gate_slots.release()
            if not outcome.ok:
                self._log_failure(hook, "upload", event, outcome, None, refused=True)
                return outcome.message or REFUSED
            self._log_output(hook, "upload", event, outcome)
        return None

    # -- one attempt, and the log ------------------------------------------------

    async def _attempt(self, hook: HookConfig, body: dict[str, object]) -> Outcome:
        data = encode(body)
        if hook.command:
            env = {**self._envs[id(hook)], **environment(body)}
            return await run_command(hook, data, env)
        key = id(hook)
        if key not in self._contexts:
            try:
                self._contexts[key] = make_context(hook)
            except (OSError, ssl.SSLError) as exc:
                return Outcome(False, summary=f"cannot load CA certificates: {exc}")
        return await post_event(hook, data, self._contexts[key])

    def _log_output(
        self, hook: HookConfig, kind: str, event: seen.SessionEvent, outcome: Outcome
    ) -> None:
        if outcome.output and log.isEnabledFor(logging.INFO):
            log.info(
                "hook %s on %s session=%d%s: %s; output %s%s",
                hook.name,
                kind,
                event.origin.session,
                _about(event),
                outcome.summary,
                _text(outcome.output),
                f" (+{outcome.dropped} bytes dropped)" if outcome.dropped else "",
            )

    def _log_failure(
        self,
        hook: HookConfig,
        kind: str,
        event: seen.SessionEvent,
        outcome: Outcome,
        attempts: int | None,
        *,
        refused: bool = False,
    ) -> None:
        target = " ".join(hook.command[:1]) if hook.command else shown(hook.url or "")
        tries = f" after {attempts} attempts" if attempts and attempts > 1 else ""
        what = "upload refused" if refused else "failed"
        output = f"; output {_text(outcome.output)}" if outcome.output else ""
        dropped = f" (+{outcome.dropped} bytes dropped)" if outcome.dropped else ""
        log.warning(
            "hook %s (%s) on %s session=%d%s %s%s: %s%s%s",
            hook.name,
            target,
            kind,
            event.origin.session,
            _about(event),
            what,
            tries,
            outcome.summary,
            output,
            dropped,
        )

    # -- shutdown ----------------------------------------------------------------

    async def close(self, wait: float = DRAIN_WAIT) -> None:
        """Let queued and running hooks finish for ``wait`` seconds, then cancel them
        (a cancelled command's process group is killed)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=wait)
        if self._queue:
            log.warning("shutdown: %d queued hook run(s) not started", len(self._queue))
            self._queue.clear()
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=wait)


def _about(event: seen.SessionEvent) -> str:
    """Which file the event was about, for the log line (``repr``: no line breaks)."""
    path = getattr(event, "path", None) or getattr(event, "src", None)
    return f" path={path!r}" if path else ""


def _text(output: bytes) -> str:
    """Output as one log-safe token: decoded leniently, newlines escaped by repr."""
    return repr(output.decode("utf-8", "replace"))
