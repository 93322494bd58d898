"""File digests on the control connection: HASH, OPTS HASH, RANG and the X* commands.

HASH follows draft-bryan-ftpext-hash: the session selects one algorithm
(``OPTS HASH``), FEAT lists them all with the selected one starred, and the
reply names the algorithm, the octet range and the file, so a client can
check it got what it asked for. A byte range comes from RANG
(draft-bryan-ftp-range, end point inclusive), which here applies to HASH
only: FEAT does not announce ``RANG STREAM``, and a data transfer that
follows a pending RANG is refused rather than silently sending the whole
file to a client that expected a part.

XCRC, XMD5, XSHA1, XSHA256 and XSHA512 are the older, unspecified commands
that many servers (ProFTPD's mod_digest, Serv-U, GlobalSCAPE) and clients
still use; they take an optional ``start end`` pair (end exclusive, as
mod_digest counts) and name their algorithm in the verb.

The core only carries algorithm *names*: the digest itself needs file I/O,
so it is the server's job (``events.FileHash``).

The client speaks the same commands from the other end, so the algorithm
table, the FEAT line, the X* argument syntax and the 213 answer are read and
written here, next to each other: what the client sends is checked against
the very parser the server runs (:func:`legacy_argument`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fileferry import paths
from fileferry.protocol import events
from fileferry.protocol.replies import Reply
from fileferry.protocol.state import SessionState


@dataclass(frozen=True, slots=True)
class Algorithm:
    #: As in IANA's "Hash Function Textual Names" (CRC32 is the de-facto name).
    name: str
    #: The de-facto command that implies it.
    verb: str
    #: Length of its digest in hex digits.
    hex_length: int


#: Every algorithm both sides know, in the client's order of preference (which
#: is also the order FEAT lists them in).
TABLE = (
    Algorithm("SHA-256", "XSHA256", 64),
    Algorithm("SHA-512", "XSHA512", 128),
    Algorithm("SHA-1", "XSHA1", 40),
    Algorithm("MD5", "XMD5", 32),
    Algorithm("CRC32", "XCRC", 8),
)
ALGORITHMS = tuple(a.name for a in TABLE)
BY_NAME = {a.name: a for a in TABLE}
DEFAULT = "SHA-256"
#: The de-facto commands and the algorithm each one implies.
LEGACY = {a.verb: a.name for a in TABLE}
#: "RANG 1 0" is the draft's way to clear a range.
_RESET = (1, 0)
#: Offsets beyond this are refused (no file system stores more).
_MAX_OFFSET = 2**63 - 1


def features(selected: str) -> tuple[str, ...]:
    """FEAT lines: the HASH list with the session's choice starred, and each X* verb."""
    listed = ";".join(name + ("*" if name == selected else "") for name in ALGORITHMS)
    return (f"HASH {listed}", *sorted(LEGACY))


def parse_feature(listed: str) -> tuple[str, ...]:
    """The algorithms a ``HASH`` FEAT line offers (its argument, star or not),
    upper-cased, in the server's order; names this table lacks are kept."""
    names = (n.strip().rstrip("*").strip().upper() for n in listed.split(";"))
    return tuple(dict.fromkeys(n for n in names if n))


def opts(state: SessionState, value: str) -> Reply:
    """``OPTS HASH [name]``: report or change the session's algorithm."""
    wanted = value.strip().upper()
    if not wanted:
        return Reply(200, state.hash_algorithm)
    if wanted not in ALGORITHMS:
        return Reply(501, "Unknown algorithm, current selection not changed.")
    state.hash_algorithm = wanted
    return Reply(200, wanted)


def _offset(text: str) -> int | None:
    # isdigit() alone admits superscripts and other scripts' digits, which int() rejects.
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > 19:
        return None
    value = int(text)
    return value if value <= _MAX_OFFSET else None


def rang(state: SessionState, arg: str) -> Reply:
    """``RANG start end`` (end inclusive); ``RANG 1 0`` clears the range."""
    words = arg.split()
    numbers = [_offset(w) for w in words]
    if len(words) != 2 or None in numbers:
        state.hash_range = None
        return Reply(501, "Syntax: RANG <start> <end>")
    start, end = numbers
    assert start is not None and end is not None
    if (start, end) == _RESET:
        state.hash_range = None
        return Reply(350, "Range reset; HASH covers whole files.")
    if start > end:
        state.hash_range = None
        return Reply(501, "RANG start is after its end; range reset.")
    state.hash_range = (start, end)
    return Reply(350, f"Restarting at {start}. End byte range at {end}.")


def transfer_refusal(state: SessionState) -> Reply | None:
    """A data transfer after RANG: refuse it (and drop the range) instead of ignoring it."""
    if state.hash_range is None:
        return None
    state.hash_range = None
    return Reply(504, "RANG applies only to HASH on this server; range reset.")


def hash_file(state: SessionState, arg: str) -> Reply | events.FileHash:
    """``HASH path`` with the selected algorithm; a pending RANG is used up."""
    chosen, state.hash_range = state.hash_range, None
    try:
        path = paths.resolve(state.cwd, arg)
    except paths.PathError as exc:
        return Reply(550, str(exc))
    if chosen is None:
        return events.FileHash(path, state.hash_algorithm, "HASH")
    start, last = chosen
    return events.FileHash(path, state.hash_algorithm, "HASH", start, last + 1)


def _split_legacy(arg: str) -> tuple[str, int, int | None] | None:
    """``path``, ``"quoted path"``, either followed by ``start end``; None if malformed."""
    text = arg.strip()
    if text.startswith('"'):
        closing = text.find('"', 1)
        if closing < 0:
            return None
        name, rest = text[1:closing], text[closing + 1 :].split()
    else:
        words = text.split(" ")
        # Trailing numbers are a range only when both are there: a name that
        # itself ends in two numbers must be quoted.
        if len(words) >= 3 and _offset(words[-1]) is not None and _offset(words[-2]) is not None:
            name, rest = " ".join(words[:-2]), words[-2:]
        else:
            name, rest = text, []
    if not rest:
        return name, 0, None
    if len(rest) != 2:
        return None
    start, end = _offset(rest[0]), _offset(rest[1])
    if start is None or end is None or end < start:
        return None
    return name, start, end


def legacy_argument(path: str, start: int = 0, end: int | None = None) -> str:
    """What to send after an X* verb for ``path`` (bytes ``[start, end)`` if ``end``).

    A name with a space is quoted, as mod_digest expects; whatever form is
    chosen must read back through the server's own parser as exactly this
    path and range, and a path no form can carry raises ``ValueError``.
    """
    suffix = "" if end is None else f" {start} {end}"
    quoted = f'"{path}"'
    forms = (quoted, path) if " " in path or path.startswith('"') else (path, quoted)
    for form in forms:
        arg = form + suffix
        if _split_legacy(arg) == (path, start if end is not None else 0, end):
            return arg
    raise ValueError(f"no X* argument can name {path!r}")


@dataclass(frozen=True, slots=True)
class HashAnswer:
    """A ``213`` answer to HASH: ``algorithm first-last hexdigest path``."""

    algorithm: str
    first: int
    last: int
    #: Lower-case hex.
    hexdigest: str
    path: str


def format_answer(algorithm: str, first: int, last: int, hexdigest: str, path: str) -> str:
    """The text of the 213 reply to HASH (``last`` is inclusive, as in RANG)."""
    return f"{algorithm} {first}-{last} {hexdigest} {path}"


def parse_answer(text: str) -> HashAnswer:
    """Read the last line of a 213 reply to HASH; ``ValueError`` if it is not one."""
    words = text.split(" ", 3)
    if len(words) < 3:
        raise ValueError(f"not a HASH answer: {text[:80]!r}")
    first_text, dash, last_text = words[1].partition("-")
    first, last = _offset(first_text), _offset(last_text)
    digest = words[2]
    if not dash or first is None or last is None:
        raise ValueError(f"HASH answer without a byte range: {text[:80]!r}")
    if not digest or not all(c in "0123456789abcdefABCDEF" for c in digest):
        raise ValueError(f"HASH answer without a hex digest: {text[:80]!r}")
    path = words[3] if len(words) > 3 else ""
    return HashAnswer(words[0].upper(), first, last, digest.lower(), path)


def parse_legacy_answer(text: str, algorithm: str) -> str:
    """The digest in the reply to an X* verb (lower-case hex).

    The verbs have no written syntax: servers answer ``250 <hex>``,
    ``213 <hex>`` or with words around it, so the first run of hex digits
    of the right length, standing alone, is the digest.
    """
    want = BY_NAME[algorithm].hex_length
    found = re.search(rf"\b[0-9A-Fa-f]{{{want}}}\b", text, re.ASCII)
    if found is not None:
        return found.group().lower()
    raise ValueError(f"no {algorithm} digest in {text[:80]!r}")


def legacy(state: SessionState, verb: str, arg: str) -> Reply | events.FileHash:
    """XCRC/XMD5/XSHA1/XSHA256/XSHA512 ``path [start end]``."""
    parsed = _split_legacy(arg)
    if parsed is None or not parsed[0]:
        return Reply(501, f"Syntax: {verb} <path> [<start> <end>]")
    name, start, end = parsed
    try:
        path = paths.resolve(state.cwd, name)
    except paths.PathError as exc:
        return Reply(550, str(exc))
    return events.FileHash(path, LEGACY[verb], verb, start, end)
