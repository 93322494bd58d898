"""The fileferry FTP/FTPS client: the Python API behind ``fileferry get/put/ls/mirror``.

``async with fileferry.connect("ftp://user@host/") as ftp:`` gives a
:class:`Client` with ``list``, ``walk``, ``stat``, ``download``, ``upload``,
``mkdir``, ``remove``, ``rename`` and ``hash``; failures are
:class:`ClientError` subclasses that carry the command line's exit status.
"""

from __future__ import annotations

from fileferry.client.api import Client, connect
from fileferry.client.errors import (
    ClientError,
    ConnectionFailed,
    ExitCode,
    LocalError,
    LoginRefused,
    RemoteError,
    UsageError,
    VerificationFailed,
)
from fileferry.client.integrity import RemoteHash
from fileferry.client.listing import Kind, RemoteEntry
from fileferry.client.transfer import TransferResult

__all__ = [
    "Client",
    "ClientError",
    "ConnectionFailed",
    "ExitCode",
    "Kind",
    "LocalError",
    "LoginRefused",
    "RemoteEntry",
    "RemoteError",
    "RemoteHash",
    "TransferResult",
    "UsageError",
    "VerificationFailed",
    "connect",
]
