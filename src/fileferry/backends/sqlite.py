"""The SQLite user store: ``db`` is the path of the file ``fileferry user`` manages."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fileferry.errors import ConfigError
from fileferry.users.base import UserStoreError
from fileferry.users.location import default_db_path

if TYPE_CHECKING:
    from fileferry.users.sqlite import SQLiteUserStore


def _path(location: str) -> Path:
    if location.startswith("file://"):
        location = location[len("file://") :]
    return Path(location).expanduser().absolute()


def default_location() -> str:
    return str(default_db_path())


def _stat(location: str) -> os.stat_result | None:
    """What is at ``location``; ``None`` if nothing is (not even the folders above).

    A path through a file (ENOTDIR) is "nothing there": service accounts
    often have ``/dev/null`` as their home. Any other failure (a loop of
    symlinks, a name too long, no permission) is raised: the file may well
    be there, unreadable, and saying "does not exist" would mislead.
    """
    try:
        return _path(location).stat()
    except (FileNotFoundError, NotADirectoryError):
        return None


def exists(location: str) -> bool:
    """Whether something is at ``location``; UserStoreError if that cannot be told."""
    try:
        return _stat(location) is not None
    except OSError as exc:
        raise UserStoreError(
            f"user database {_path(location)} cannot be read ({exc.strerror})"
        ) from None


def held_by(location: str, folders: Sequence[str]) -> str | None:
    real = _path(location).resolve()
    for folder in folders:
        if real.is_relative_to(Path(folder).expanduser().resolve()):
            return folder
    return None


def check(location: str, served: Sequence[str]) -> str:
    """The file's absolute path; it must be a file and lie outside every served folder."""
    db = _path(location)
    try:
        found = _stat(location)
    except OSError as exc:
        raise ConfigError(f"db: {location!r} cannot be read ({exc.strerror})") from None
    if found is None:
        raise ConfigError(
            f"db: {location!r} does not exist; create it with:"
            f" fileferry user add --db {location} NAME"
        )
    if stat.S_ISDIR(found.st_mode):
        raise ConfigError(f"db: {location!r} is a folder, not a user database file")
    if not stat.S_ISREG(found.st_mode):
        raise ConfigError(f"db: {location!r} is not a regular file")
    folder = held_by(location, served)
    if folder is not None:
        raise ConfigError(
            f"db: {location!r} is inside the served folder {folder!r}; keep the user"
            " database elsewhere (default: ~/.local/share/fileferry/users.db)"
        )
    return str(db)


def open(location: str, *, create: bool) -> SQLiteUserStore:
    from fileferry.users.sqlite import SQLiteUserStore  # SQLite only with a database

    return SQLiteUserStore(_path(location), create=create)
