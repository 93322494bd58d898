"""Reading replies off the control stream: the client's half of RFC 959 section 4.2.

A reply is one line ``NNN text`` or several: ``NNN-first``, any lines at
all, and ``NNN last`` with the same code. The lines in between are free
text (a server indents them so that none can look like the end), and one
leading space is taken off each, which undoes :meth:`Reply.encode`.

What arrives here comes from a server that may be broken or hostile, so the
parser is strict where guessing would be unsafe and bounded everywhere: a
line longer than ``max_line`` or a reply longer than ``max_reply`` is an
error rather than memory, and so is a first line that is not ``NNN``
followed by a space, a dash or nothing. After a :class:`ReplyError` the
stream is out of step and the connection must be dropped.

Sans-I/O: bytes go in through :meth:`ReplyParser.feed`, replies come out of
:meth:`ReplyParser.next_reply`; the socket belongs to the caller.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from fileferry.protocol.replies import Reply

#: Longest reply line accepted, in bytes: a quoted 4 KiB path with every
#: character doubled still fits, and so does anything a stream reader with
#: asyncio's default buffer would have taken.
MAX_LINE: Final = 64 * 1024
#: Longest reply accepted, all its lines together (a FEAT or HELP is a few kB).
MAX_REPLY: Final = 1024 * 1024
#: How much of an offending line an error message quotes.
_QUOTED = 60


class ReplyError(ValueError):
    """The server sent something that is not an FTP reply (or too much of one)."""


def _sample(line: str) -> str:
    return repr(line if len(line) <= _QUOTED else line[:_QUOTED] + "...")


def _code(line: str) -> int | None:
    """The code of a reply's first line, if it is one (ASCII digits only: int()
    would take other scripts' digits too)."""
    head = line[:3]
    if len(head) != 3 or not (head.isascii() and head.isdigit()):
        return None
    if line[3:4] not in ("", " ", "-"):
        return None
    code = int(head)
    return code if 100 <= code <= 659 else None


class ReplyParser:
    """Turns the bytes of a control connection into :class:`Reply` objects."""

    __slots__ = ("_buf", "_code", "_first", "_lines", "_ready", "_size", "max_line", "max_reply")

    def __init__(self, max_line: int = MAX_LINE, max_reply: int = MAX_REPLY) -> None:
        self.max_line = max_line
        self.max_reply = max_reply
        self._buf = bytearray()
        self._ready: deque[Reply] = deque()
        # The multi-line reply being read: its code and its lines so far.
        self._code: str | None = None
        self._first = ""
        self._lines: list[str] = []
        self._size = 0

    @property
    def idle(self) -> bool:
        """Nothing received that has not been handed out (no partial line or reply)."""
        return not self._buf and self._code is None and not self._ready

    def feed(self, data: bytes) -> None:
        """Add received bytes; raises :class:`ReplyError` on anything that is not FTP."""
        buf = self._buf
        if b"\n" not in data:
            # Part of a line: kept, unless it is already too long to be one.
            buf += data
            if len(buf) > self.max_line + 1:
                raise ReplyError(f"reply line longer than {self.max_line} bytes")
            return
        if buf:
            buf += data
            data = bytes(buf)
            buf.clear()
        # One split in C, not a find per line: a reply is usually one read.
        *lines, rest = data.split(b"\n")
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if len(line) > self.max_line:
                raise ReplyError(f"reply line longer than {self.max_line} bytes")
            self._line(line.decode("utf-8", "surrogateescape"))
        if len(rest) > self.max_line + 1:
            raise ReplyError(f"reply line longer than {self.max_line} bytes")
        buf += rest

    def next_reply(self) -> Reply | None:
        """The oldest complete reply, or ``None`` until more bytes arrive."""
        return self._ready.popleft() if self._ready else None

    def _line(self, line: str) -> None:
        if self._code is None:
            code = _code(line)
            if code is None:
                raise ReplyError(f"not an FTP reply: {_sample(line)}")
            if line[3:4] != "-":
                self._ready.append(Reply(code, line[4:]))
                return
            self._code, self._first, self._size = line[:3], line[4:], len(line) + 2
            return
        # Counted with its line end, so that a flood of empty lines is capped too.
        self._size += len(line) + 2
        if self._size > self.max_reply:
            raise ReplyError(f"reply longer than {self.max_reply} bytes")
        prefix = self._code
        if line.startswith(prefix) and line[3:4] in ("", " "):
            middle, first = tuple(self._lines), self._first
            self._code, self._first, self._lines = None, "", []
            self._ready.append(Reply(int(prefix), first, middle, line[4:], multiline=True))
            return
        self._lines.append(line[1:] if line.startswith(" ") else line)


def parse_replies(data: bytes) -> list[Reply]:
    """Every complete reply in ``data``: for tests and one-shot callers."""
    parser = ReplyParser()
    parser.feed(data)
    out: list[Reply] = []
    while (reply := parser.next_reply()) is not None:
        out.append(reply)
    return out
