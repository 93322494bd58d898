"""Helpers shared by the server tests (kept out of conftest so imports are unambiguous)."""

from __future__ import annotations

import ftplib
import hashlib

from fileferry.server.thread import ServerThread


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def connect(server: ServerThread, timeout: float = 20) -> ftplib.FTP:
    host, port = server.address
    f = ftplib.FTP(timeout=timeout)
    f.encoding = "utf-8"
    f.connect(host, port)
    return f
