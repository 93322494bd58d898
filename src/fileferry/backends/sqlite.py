"""The SQLite user store: ``db`` is the path of the file ``fileferry user`` manages."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fileferry.errors import ConfigError
from fileferry.users.sqlite import SQLiteUserStore, default_db_path


def _path(location: str) -> Path:
    if location.startswith("file://"):
        location = location[len("file://") :]
    return Path(location).expanduser().absolute()


def default_location() -> str:
    return str(default_db_path())


def exists(location: str) -> bool:
    return _path(location).exists()


def held_by(location: str, folders: Sequence[str]) -> str | None:
    real = _path(location).resolve()
    for folder in folders:
        if real.is_relative_to(Path(folder).expanduser().resolve()):
            return folder
    return None


def check(location: str, served: Sequence[str]) -> str:
    """The file's absolute path; it must exist and lie outside every served folder."""
    db = _path(location)
    if not db.is_file():
        raise ConfigError(
            f"db: {location!r} does not exist; create it with:"
            f" fileferry user add --db {location} NAME"
        )
    folder = held_by(location, served)
    if folder is not None:
        raise ConfigError(
            f"db: {location!r} is inside the served folder {folder!r}; keep the user"
            " database elsewhere (default: ~/.local/share/fileferry/users.db)"
        )
    return str(db)


def open(location: str, *, create: bool) -> SQLiteUserStore:
    return SQLiteUserStore(_path(location), create=create)
