"""PostgreSQL URLs as they may be shown: without the password (no driver needed)."""

from __future__ import annotations

import re

_PASSWORD = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@]*):[^@/?#]*@")
_PARAMETER = re.compile(r"(?i)(password=)[^&\s]*")


def redact(url: str) -> str:
    """``url`` without a password (``user@host``, never ``user:pw@host``; ``password=***``)."""
    return _PARAMETER.sub(r"\1***", _PASSWORD.sub(r"\1@", url))
