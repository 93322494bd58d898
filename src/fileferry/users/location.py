"""Where the default user database lives, apart from the SQLite store itself.

``fileferry serve`` looks for this file at every start; keeping the path
rule out of ``users/sqlite.py`` means that look does not import SQLite.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_db_path(environ: dict[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/fileferry/users.db``, else ``~/.local/share/fileferry/users.db``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "fileferry" / "users.db"
