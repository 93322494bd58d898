"""Pure virtual-path normalisation, jailed to ``/``.

Every path a client names is turned into an absolute, normalised *virtual*
path here, before any storage sees it. ``..`` can never climb above ``/``
(like a chroot), and inputs that have no business in a path (NUL, control
characters, backslashes that some clients use as a separator) are refused
rather than guessed at. Storage backends jail a second time at their own
boundary (symlinks), so a bug here is not the only line of defence.

This module imports nothing else of fileferry and performs no I/O, so it can
be property-tested in isolation and shared by the protocol core and storage.
"""

from __future__ import annotations

#: Longest virtual path accepted, in characters; longer ones are refused early.
MAX_PATH = 4096
#: Longest single name (one path component), as on common Unix file systems.
MAX_NAME = 255


class PathError(ValueError):
    """A client-supplied path is malformed; the FTP answer is 553 (or 550)."""


_FORBIDDEN = frozenset(chr(c) for c in range(32)) | {"\\", chr(127)}


def resolve(cwd: str, arg: str) -> str:
    """Return the absolute virtual path that ``arg`` names, seen from ``cwd``.

    ``cwd`` must itself be a normalised virtual path (it always is: it only
    ever changes to a value this function returned). Raises ``PathError`` for
    anything that is not a plain path.
    """
    if len(arg) > MAX_PATH:
        raise PathError("Path too long")
    bad = _FORBIDDEN.intersection(arg)
    if bad:
        raise PathError("Path contains a forbidden character")
    joined = arg if arg.startswith("/") else f"{cwd.rstrip('/')}/{arg}"
    parts: list[str] = []
    for part in joined.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        try:
            size = len(part.encode("utf-8", "surrogateescape"))
        except UnicodeEncodeError:  # a lone surrogate that stands for no raw byte
            raise PathError("Path is not valid text") from None
        if size > MAX_NAME:
            raise PathError("File name too long")
        parts.append(part)
    result = "/" + "/".join(parts)
    if len(result) > MAX_PATH:
        raise PathError("Path too long")
    return result


def split(path: str) -> tuple[str, str]:
    """Split a normalised virtual path into (parent, name); the root has name ``""``."""
    if path == "/":
        return "/", ""
    parent, _, name = path.rpartition("/")
    return (parent or "/"), name


def join(parent: str, name: str) -> str:
    """Join a normalised virtual directory path and one plain name."""
    if not name or "/" in name or name in (".", ".."):
        raise PathError("Invalid file name")
    return f"{parent.rstrip('/')}/{name}"


def components(path: str) -> list[str]:
    """The names along a normalised virtual path, root excluded."""
    return [p for p in path.split("/") if p]
