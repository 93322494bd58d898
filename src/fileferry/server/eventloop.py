"""Which event loop runs the server: uvloop when it is installed, else asyncio's own.

uvloop (``pip install fileferry[uvloop]``) implements the loop in C on
libuv; for a server that spends its time in the loop's socket calls and
callbacks (300 control connections, passive accepts, small transfers) it
cuts the per-event cost. Nothing in fileferry depends on it: the same code
runs on the standard loop, and ``FILEFERRY_NO_UVLOOP=1`` forces that (the
test suite is run both ways).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


def uvloop_wanted() -> bool:
    """uvloop is importable and not switched off with ``FILEFERRY_NO_UVLOOP``."""
    if os.environ.get("FILEFERRY_NO_UVLOOP", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def name() -> str:
    """``uvloop X.Y`` or ``asyncio``, for the ready line and logs."""
    if not uvloop_wanted():
        return "asyncio"
    import uvloop

    return f"uvloop {uvloop.__version__}"


def new_event_loop() -> asyncio.AbstractEventLoop:
    if uvloop_wanted():
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, _T]) -> _T:
    """Like ``asyncio.run``, on the loop :func:`new_event_loop` picks, after
    :func:`prepare_process`, with :func:`trim_memory` running beside ``main``."""
    prepare_process()
    # Everything built so far (modules, config, user store) lives as long as
    # the process: moved out of the collector's generations, it is no longer
    # rescanned by every full collection that a busy listing or a burst of
    # logins triggers (gc.freeze, as the gc docs advise before serving).
    gc.collect()
    gc.freeze()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(_with_trimming(main))


async def _with_trimming(main: Coroutine[Any, Any, _T]) -> _T:
    trimmer = asyncio.ensure_future(trim_memory())
    try:
        return await main
    finally:
        trimmer.cancel()


#: Seconds between two :func:`trim_memory` passes.
TRIM_INTERVAL = 2.0


async def trim_memory(interval: float = TRIM_INTERVAL) -> None:
    """Hand freed heap pages back to the system every ``interval`` seconds.

    Transfers that must see their bytes (TLS, ASCII) use megabyte buffers,
    from a heap arena per thread; glibc keeps what was freed in the middle
    of an arena for good, so one FTPS download would leave the server 25 MiB
    bigger. ``malloc_trim(0)`` releases those pages (a pass over a few tens
    of megabytes takes well under a millisecond), so the server's memory
    follows its load back down. A no-op without glibc.
    """
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    while True:
        await asyncio.sleep(interval)
        trim(0)


#: glibc's mallopt parameter number for the mmap threshold.
_M_MMAP_THRESHOLD = -3
#: Allocations at least this big get their own mapping, returned on free.
MMAP_THRESHOLD = 4 * 1024 * 1024
_M_ARENA_MAX = -8
#: Heap arenas at most; glibc's default (8 per core) gives each pool thread its own.
ARENA_MAX = 2


def prepare_process() -> None:
    """Process-wide settings a server wants; idempotent, and harmless when they fail.

    * The soft limit on open files is raised to the hard limit: 300 sessions
      each with a data connection, a passive listener, an upload file and a
      splice pipe need more than the usual 1024 descriptors.
    * glibc's mmap threshold is pinned at 4 MiB. By default it grows to the
      largest block ever freed, so after one password hash (Argon2id takes
      19 MiB) every such block would come from a heap arena that never
      shrinks, and the server's memory would stay at its peak for good.
      Pinned, big transient blocks are unmapped when freed; the 1 MiB
      buffers of the data path stay on the heap.
    * At most two heap arenas: by default each of the 32 file-system threads
      that once held a megabyte buffer keeps an arena of its own, and the
      server stays tens of megabytes bigger after one busy minute. The pool
      threads spend their time in system calls, so they hardly contend.
    """
    global _prepared
    if _prepared:
        return
    _prepared = True
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, OSError, ValueError):
        pass
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_ARENA_MAX, ARENA_MAX)
        libc.malloc_trim(0)  # give back what start-up (config hashing) left behind
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


_prepared = False
