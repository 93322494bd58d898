"""The installed fileferry's version, without importing the package root.

The root (``fileferry/__init__.py``) lazily imports the server, which starts
this admin: importing ``fileferry.__version__`` from here would close an
import cycle, so the version comes from the installed distribution.
"""

from __future__ import annotations

from importlib import metadata


def version() -> str:
    try:
        return metadata.version("fileferry")
    except metadata.PackageNotFoundError:
        return "unknown"
