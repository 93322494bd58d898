"""TYPE A line-ending conversion, as stateful streaming codecs.

On the wire ASCII mode uses CRLF; files on this server use LF. Data arrives
in arbitrary chunks, so a CR at the end of one chunk may belong to a CRLF
split across two: each codec carries one byte of state across calls.
"""

from __future__ import annotations


class ToNetwork:
    """LF → CRLF for downloads; an existing CRLF is not doubled."""

    __slots__ = ("_last_cr",)

    def __init__(self) -> None:
        self._last_cr = False

    def convert(self, data: bytes) -> bytes:
        if not data:
            return data
        out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if self._last_cr and data.startswith(b"\n"):
            out = out[1:]  # the CR was sent with the previous chunk
        self._last_cr = data.endswith(b"\r")
        return out


class FromNetwork:
    """CRLF → LF for uploads; a lone CR is kept."""

    __slots__ = ("_pending_cr",)

    def __init__(self) -> None:
        self._pending_cr = False

    def convert(self, data: bytes) -> bytes:
        if self._pending_cr:
            data = b"\r" + data
            self._pending_cr = False
        if data.endswith(b"\r"):
            self._pending_cr = True
            data = data[:-1]
        return data.replace(b"\r\n", b"\n")

    def flush(self) -> bytes:
        """Bytes still held at end of stream (a trailing lone CR)."""
        if self._pending_cr:
            self._pending_cr = False
            return b"\r"
        return b""
