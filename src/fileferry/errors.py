"""Error families that know their FTP reply code.

Backends translate errno values (and, later, object-store errors) into these
classes at their boundary, so the server can answer a client with a correct
code and a short message without ever leaking a host path or exception text.
"""

from __future__ import annotations


class FileferryError(Exception):
    """Root of every error fileferry raises on purpose."""


class ConfigError(FileferryError):
    """A bad option or config value; the message names the key and the problem."""


class StorageError(FileferryError):
    """A storage operation failed; ``reply_code`` and ``reply_text`` go to the client."""

    reply_code = 451
    reply_text = "Requested action aborted: local error in processing"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.reply_text)
        self.message = message or self.reply_text


class NotFound(StorageError):
    reply_code = 550
    reply_text = "No such file or directory"


class AlreadyExists(StorageError):
    reply_code = 550
    reply_text = "File exists"


class PermissionDenied(StorageError):
    reply_code = 550
    reply_text = "Permission denied"


class NotADirectory(StorageError):
    reply_code = 550
    reply_text = "Not a directory"


class IsADirectory(StorageError):
    reply_code = 550
    reply_text = "Is a directory"


class DirectoryNotEmpty(StorageError):
    reply_code = 550
    reply_text = "Directory not empty"


class InvalidName(StorageError):
    reply_code = 553
    reply_text = "File name not allowed"


class InvalidOffset(StorageError):
    reply_code = 554
    reply_text = "Invalid REST parameter"


class QuotaExceeded(StorageError):
    reply_code = 552
    reply_text = "Quota exceeded"


class InsufficientStorage(StorageError):
    reply_code = 452
    reply_text = "Insufficient storage space"


class StorageUnavailable(StorageError):
    reply_code = 451
    reply_text = "Storage temporarily unavailable"
