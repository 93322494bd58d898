"""fileferry: a fast, secure, concurrent FTP/FTPS server and client on asyncio."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from fileferry.client.api import connect
    from fileferry.config import ServerConfig
    from fileferry.server.app import FTPServer
    from fileferry.server.thread import ServerThread

__all__ = ["FTPServer", "ServerConfig", "ServerThread", "__version__", "connect"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the protocol core never pulls in asyncio servers.
    if name == "FTPServer":
        from fileferry.server.app import FTPServer

        return FTPServer
    if name == "ServerThread":
        from fileferry.server.thread import ServerThread

        return ServerThread
    if name == "ServerConfig":
        from fileferry.config import ServerConfig

        return ServerConfig
    if name == "connect":
        from fileferry.client.api import connect

        return connect
    raise AttributeError(name)
