"""How one attempt of a hook ended, in the terms the runner needs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    #: Whether another attempt might do better (a timeout, a 503), if retries are left.
    retry: bool = False
    #: For the log: ``exit 3``, ``timed out after 5 s``, ``HTTP 500``...
    summary: str = ""
    #: What the hook printed (or the response body), at most its ``max_output``.
    output: bytes = b""
    #: Bytes of output beyond that, read and dropped.
    dropped: int = 0
    #: For the client when a ``before_reply`` hook refuses: its first line, made safe.
    message: str = ""
