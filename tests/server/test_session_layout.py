"""What a server holds per session: kept small because it holds hundreds of them.

A ``ControlConnection`` keeps its attributes in slots (see its class); one
added without a slot still works but costs the session an instance dict
again. These tests name it. Facts about layout, not sizes, so nothing here
depends on the machine.
"""

from __future__ import annotations

import ftplib

from fileferry.protocol.session import Session
from fileferry.server.control import ControlConnection
from fileferry.server.pytestplugin import LocalFTPServer


def _live_connections(ftp_server: LocalFTPServer) -> list[ControlConnection]:
    assert ftp_server.thread is not None and ftp_server.thread.server is not None
    return list(ftp_server.thread.server._connections.values())


def test_a_logged_in_session_spills_nothing_out_of_its_slots(ftp_server: LocalFTPServer) -> None:
    with ftplib.FTP() as ftp:
        ftp.connect(ftp_server.host, ftp_server.port, timeout=10)
        ftp.login(ftp_server.user, ftp_server.password)
        ftp.cwd("/")
        ftp.voidcmd("NOOP")
        (conn,) = _live_connections(ftp_server)
        # Anything here is an attribute set without a slot: add it to __slots__.
        assert vars(conn) == {}
        assert conn.account is not None and conn.account.name == ftp_server.user
        assert isinstance(conn.session, Session)
        assert conn.session._held == []
