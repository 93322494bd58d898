"""What a server says it can do: the FEAT reply (RFC 2389), read by a client.

A server that knows FEAT answers ``211-`` with one feature per line, each
indented by a space, and a closing ``211 End``; a feature line is a name
and, after a space, its argument (``REST STREAM``, ``HASH SHA-256*;MD5``).
Names are case-insensitive. A server without FEAT (500, 502) or with
nothing to list (a one-line 211) offers no extensions: the client then
sticks to RFC 959.
"""

from __future__ import annotations

from dataclasses import dataclass

from fileferry.protocol.replies import Reply


@dataclass(frozen=True, slots=True)
class Features:
    #: The feature lines, trimmed, in the server's order.
    lines: tuple[str, ...] = ()

    @classmethod
    def from_reply(cls, reply: Reply) -> Features:
        if reply.code != 211 or not reply.is_multiline:
            return cls()
        return cls(tuple(line.strip() for line in reply.lines if line.strip()))

    def has(self, name: str) -> bool:
        """Whether a feature called ``name`` (case-insensitive) is listed."""
        return self.argument(name) is not None

    def argument(self, name: str) -> str | None:
        """The rest of the line of feature ``name`` (``""`` if it has none), or ``None``."""
        wanted = name.upper()
        for line in self.lines:
            word, _, rest = line.partition(" ")
            if word.upper() == wanted:
                return rest.strip()
        return None
