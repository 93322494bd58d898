"""Splitting the control stream into capped command lines.

TCP delivers a byte stream, not lines, so bytes are buffered until an end of
line arrives. Four hostile or quirky inputs are handled here, once:

* a line longer than the cap is not buffered without bound: a single
  :data:`TOO_LONG` marker is produced as soon as the cap is passed (so the
  client hears 500 at once, not when a line end that may never come
  arrives), and the rest of the line is dropped as it arrives;
* a line still not over after :func:`endless_bound` bytes (1 MiB, or 16
  times the cap if that is more) is a client that will never send a line
  end (or a stream that is not FTP):
  an :data:`ENDLESS` marker is produced and everything after it ignored, so
  the session can say 421 and close instead of reading junk forever;
* Telnet commands (``IAC IP``, ``IAC DM`` that clients send before ABOR,
  option negotiations) are removed, and ``IAC IAC`` becomes one ``0xFF``;
* lines end at LF; a CR before it is dropped (RFC 959 says CRLF, many clients
  and humans with ``nc`` send LF only).

Decoding is UTF-8 (RFC 2640) with ``surrogateescape``: raw bytes that are not
UTF-8 survive as surrogates so a client can name any file it was shown.
"""

from __future__ import annotations

from typing import Final

IAC: Final = 0xFF
_WILL_WONT_DO_DONT: Final = frozenset({0xFB, 0xFC, 0xFD, 0xFE})

#: Default cap on one command line, in bytes (paths up to 4096 plus a verb).
MAX_LINE: Final = 4200
#: A line still not over after this many bytes is :data:`ENDLESS`...
ENDLESS_AFTER: Final = 1024 * 1024
#: ...or after this many times the cap, if the cap was raised that far.
ENDLESS_FACTOR: Final = 16


def endless_bound(max_line: int) -> int:
    """Bytes of one line after which it is :data:`ENDLESS`.

    No client sends such a line by mistake: anything past the cap is already
    refused. The bound only stops the server reading junk forever, so it is
    generous: a long line below it gets its 500 and the session goes on.
    """
    return max(ENDLESS_AFTER, max_line * ENDLESS_FACTOR)


class _Marker:
    """Marker type for what the reader says in place of a line."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: The current line passed the cap (produced once per line, when it does).
TOO_LONG: Final = _Marker("TOO_LONG")
#: The current line passed :func:`endless_bound`; nothing follows.
ENDLESS: Final = _Marker("ENDLESS")


class LineReader:
    """Accumulates control-channel bytes and hands out complete lines."""

    __slots__ = (
        "_buf",
        "_discarded",
        "_discarding",
        "_ended",
        "_endless",
        "_eof",
        "_lines",
        "_pending_iac",
        "max_line",
    )

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._lines: list[str | _Marker] = []
        self._discarding = False
        #: Bytes of the current too-long line seen so far (while discarding).
        self._discarded = 0
        self._endless = endless_bound(max_line)
        #: An ENDLESS line was reported: every later byte is ignored.
        self._ended = False
        self._pending_iac = b""
        self._eof = False

    @property
    def at_eof(self) -> bool:
        """True once the peer closed and every complete line was taken."""
        return self._eof and not self._lines

    def feed(self, data: bytes) -> None:
        """Add received bytes; an empty ``data`` means the peer closed."""
        if not data:
            self._eof = True
            return
        if self._ended:
            return
        if (
            not self._buf
            and not self._discarding
            and not self._pending_iac
            and data.find(b"\n") == len(data) - 1
            and len(data) <= self.max_line + 1
            and IAC not in data
        ):
            # The usual case, one whole command per read: no buffering.
            end = -2 if data.endswith(b"\r\n") else -1
            self._lines.append(data[:end].decode("utf-8", "surrogateescape"))
            return
        if self._pending_iac or IAC in data:
            data = self._strip_telnet(self._pending_iac + data)
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                self._append(data[start:])
                return
            self._append(data[start:nl])
            if self._ended:
                return
            self._finish_line()
            start = nl + 1

    def next_line(self) -> str | _Marker | None:
        """The oldest complete line, a marker (:data:`TOO_LONG`, :data:`ENDLESS`),
        or ``None`` if none is ready."""
        if self._lines:
            return self._lines.pop(0)
        return None

    def _append(self, chunk: bytes) -> None:
        if self._discarding:
            self._discarded += len(chunk)
            if self._discarded > self._endless and not self._ended:
                self._ended = True
                self._lines.append(ENDLESS)
            return
        # One byte of slack for the CR of a CRLF: the cap is on the line itself.
        if len(self._buf) + len(chunk) > self.max_line + 1:
            self._discarded = len(self._buf)
            self._buf.clear()
            self._discarding = True
            self._lines.append(TOO_LONG)
            self._append(chunk)
            return
        self._buf += chunk

    def _finish_line(self) -> None:
        if self._discarding:
            self._discarding = False
            return
        raw = bytes(self._buf)
        self._buf.clear()
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > self.max_line:
            self._lines.append(TOO_LONG)
            return
        self._lines.append(raw.decode("utf-8", "surrogateescape"))

    def _strip_telnet(self, data: bytes) -> bytes:
        """Remove Telnet command sequences, keeping an incomplete one for later."""
        out = bytearray()
        i, n = 0, len(data)
        self._pending_iac = b""
        while i < n:
            b = data[i]
            if b != IAC:
                j = data.find(IAC, i)
                if j < 0:
                    j = n
                out += data[i:j]
                i = j
                continue
            if i + 1 >= n:
                self._pending_iac = data[i:]
                break
            cmd = data[i + 1]
            if cmd == IAC:
                out.append(IAC)
                i += 2
            elif cmd in (0x0A, 0x0D):
                i += 1  # a stray IAC before a line end must not swallow the line end
            elif cmd in _WILL_WONT_DO_DONT:
                if i + 2 >= n:
                    self._pending_iac = data[i:]
                    break
                i += 3
            else:
                i += 2
        return bytes(out)
