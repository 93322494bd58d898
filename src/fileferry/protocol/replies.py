"""FTP replies: a code and text, and their exact wire form.

A multi-line reply (RFC 959 section 4.2) starts ``NNN-``, ends ``NNN `` and
indents every line in between with a space, so that a client can never
mistake a line of text (a file name starting with digits, say) for the end.
CR and LF inside text are neutralised here, once, so no caller can inject a
fake reply line through a file name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str = ""
    #: Extra lines for a multi-line reply, sent between the first and the last.
    lines: tuple[str, ...] = ()
    #: Text of the last line of a multi-line reply (defaults to "End").
    footer: str = "End"

    def __post_init__(self) -> None:
        if not 100 <= self.code <= 659:
            raise ValueError(f"reply code {self.code} out of range")

    @property
    def is_preliminary(self) -> bool:
        return self.code < 200

    @property
    def is_positive(self) -> bool:
        return 100 <= self.code < 400

    def encode(self) -> bytes:
        """The reply as bytes to write on the control connection."""
        first = _clean(self.text)
        if not self.lines:
            return f"{self.code} {first}\r\n".encode("utf-8", "surrogateescape")
        parts = [f"{self.code}-{first}\r\n"]
        for line in self.lines:
            parts.append(f" {_clean(line)}\r\n")
        parts.append(f"{self.code} {_clean(self.footer)}\r\n")
        return "".join(parts).encode("utf-8", "surrogateescape")


def _clean(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def quote_path(path: str) -> str:
    """Quote a path for a 257 reply: RFC 959 doubles embedded quotes."""
    return '"' + path.replace('"', '""') + '"'
