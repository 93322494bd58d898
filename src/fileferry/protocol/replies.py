"""FTP replies: a code and text, and their exact wire form.

A multi-line reply (RFC 959 section 4.2) starts ``NNN-``, ends ``NNN `` and
indents every line in between with a space, so that a client can never
mistake a line of text (a file name starting with digits, say) for the end.
CR and LF inside text are neutralised here, once, so no caller can inject a
fake reply line through a file name.

The same type describes a reply the client *received*
(:mod:`fileferry.protocol.replyparser` builds it), so both ends of the
protocol agree on one shape: ``text`` is the first line, ``lines`` the ones
in between and ``footer`` the last.
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
    #: Multi-line even without middle lines: a received ``NNN-a`` / ``NNN b``
    #: pair has none, and must not read back as one line.
    multiline: bool = False

    def __post_init__(self) -> None:
        if not 100 <= self.code <= 659:
            raise ValueError(f"reply code {self.code} out of range")

    @property
    def is_preliminary(self) -> bool:
        return self.code < 200

    @property
    def is_positive(self) -> bool:
        return 100 <= self.code < 400

    @property
    def is_multiline(self) -> bool:
        return bool(self.lines) or self.multiline

    @property
    def all_lines(self) -> tuple[str, ...]:
        """Every line's text, first to last, without codes or indentation."""
        if self.is_multiline:
            return (self.text, *self.lines, self.footer)
        return (self.text,)

    @property
    def last_line(self) -> str:
        """Where a multi-line answer puts its result (HASH, for one)."""
        return self.footer if self.is_multiline else self.text

    def __str__(self) -> str:
        """``code last-line``: what an error message quotes of a reply."""
        return f"{self.code} {self.last_line}".rstrip()

    def encode(self) -> bytes:
        """The reply as bytes to write on the control connection."""
        first = _clean(self.text)
        if not self.lines and not self.multiline:
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


def unquote_path(text: str) -> str:
    """The path in a 257 reply's text: the first quoted string, ``""`` read as ``"``.

    The inverse of :func:`quote_path`, for whatever follows the path (RFC 959
    allows any commentary, quotes included); ``ValueError`` if there is none.
    """
    start = text.find('"')
    if start < 0:
        raise ValueError("no quoted path in the reply")
    out: list[str] = []
    i = start + 1
    while (end := text.find('"', i)) >= 0:
        out.append(text[i:end])
        if text[end + 1 : end + 2] != '"':
            return '"'.join(out)
        i = end + 2
    raise ValueError("the quoted path in the reply is not closed")
