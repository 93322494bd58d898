"""Client failures, each of a kind a script can tell apart by the exit status.

A person reading stderr wants one clear line; a script wants to know *what
kind* of thing went wrong without parsing that line: retry on a network
failure, ask for a password on a refused login, give up on a missing file,
free disk space on a local write error, and treat a failed verification as
data corruption. So every error carries its exit status, and the table
below is part of the command line's contract (documented in the README).
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    #: Anything not listed below (an unexpected reply, a bug).
    FAILURE = 1
    #: Bad command-line usage or a malformed URL.
    USAGE = 2
    #: Unknown host, refused or dropped connection, timeout, TLS failure.
    CONNECTION = 3
    #: The server refused the login (or no password was available).
    LOGIN = 4
    #: The server refused a file operation: missing file, permission, quota.
    REMOTE = 5
    #: A local file could not be read or written (missing, permission, disk full).
    LOCAL = 6
    #: The transferred data does not match the source (hash or size).
    VERIFY = 7
    #: Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
    INTERRUPTED = 130


class ClientError(Exception):
    """Root of the client's deliberate failures; ``str()`` is the one-line message."""

    exit_code = ExitCode.FAILURE


class UsageError(ClientError):
    exit_code = ExitCode.USAGE


class ConnectionFailed(ClientError):
    exit_code = ExitCode.CONNECTION


class LoginRefused(ClientError):
    exit_code = ExitCode.LOGIN


class RemoteError(ClientError):
    """A negative reply to a file operation; ``code`` is the server's reply code."""

    exit_code = ExitCode.REMOTE

    def __init__(self, message: str, code: int = 550) -> None:
        super().__init__(message)
        self.code = code


class ProtocolFailure(ClientError):
    """The server answered something that makes no sense at that point."""

    exit_code = ExitCode.FAILURE


class LocalError(ClientError):
    exit_code = ExitCode.LOCAL


class VerificationFailed(ClientError):
    exit_code = ExitCode.VERIFY


def local_error(action: str, path: object, exc: OSError) -> LocalError:
    """A local ``OSError`` as one readable line (``EFBIG`` reads as a full disk too)."""
    reason = exc.strerror or str(exc)
    return LocalError(f"cannot {action} {path}: {reason}")
