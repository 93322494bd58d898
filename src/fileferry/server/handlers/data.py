"""PASV, EPSV, PORT and EPRT: setting up the next data connection.

The address a client gives for active mode is never trusted: it must be the
control connection's own peer and an unprivileged port (RFC 2577), or the
server could be used to attack a third host ("FTP bounce").
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from typing import TYPE_CHECKING

from fileferry.protocol import events
from fileferry.protocol.addresses import format_epsv, format_pasv, same_host, unmap
from fileferry.protocol.replies import Reply
from fileferry.server.ports import NoFreePort

if TYPE_CHECKING:
    from fileferry.server.control import ControlConnection


@functools.lru_cache(maxsize=256)
def _is_ipv4(host: str) -> bool:
    """Whether a local address is IPv4 (cached: asked on every PASV/EPSV)."""
    try:
        return ipaddress.ip_address(unmap(host)).version == 4
    except ValueError:
        return False


async def enter_passive(conn: ControlConnection, ev: events.EnterPassive) -> None:
    control_v4 = _is_ipv4(conn.local_host)
    own = 1 if control_v4 else 2
    if ev.protocol is not None and ev.protocol != own:
        conn.reply(Reply(522, f"Network protocol not supported, use ({own})"), ev)
        return
    masquerade = conn.app.config.data.masquerade_address
    if not ev.extended and not control_v4 and masquerade is None:
        conn.reply(Reply(425, "PASV is IPv4 only; use EPSV on an IPv6 connection."), ev)
        return
    try:
        port = conn.data.listen()
    except NoFreePort:
        conn.log_event("passive-ports-exhausted")
        conn.reply(Reply(425, "No free passive port; try again later."), ev)
        return
    except OSError:
        conn.reply(Reply(425, "Cannot open a passive listener."), ev)
        return
    if ev.extended:
        conn.reply(Reply(229, format_epsv(port)), ev)
    else:
        host = masquerade or unmap(conn.local_host)
        conn.reply(Reply(227, format_pasv(host, port)), ev)


async def enter_active(conn: ControlConnection, ev: events.EnterActive) -> None:
    host = ev.host
    if ipaddress.ip_address(host).is_unspecified:
        # lftp sends "EPRT |2|::|port|" on loopback: "my own address", which
        # can only mean the control peer, so it opens no bounce.
        host = unmap(conn.peer_host)
    if not same_host(host, conn.peer_host):
        conn.log_event("port-refused", host=ev.host, reason="foreign address")
        conn.reply(Reply(501, "Rejected: data connections go only to your own address."), ev)
        return
    if ev.port < 1024:
        conn.log_event("port-refused", host=ev.host, port=ev.port, reason="privileged port")
        conn.reply(Reply(501, "Rejected: privileged port."), ev)
        return
    if conn.data.family == socket.AF_INET and ":" in host:
        conn.reply(Reply(522, "Network protocol not supported, use (1)"), ev)
        return
    conn.data.set_active(unmap(host), ev.port)
    conn.reply(Reply(200, f"{'EPRT' if ev.extended else 'PORT'} command successful."), ev)


HANDLERS = {
    events.EnterPassive: enter_passive,
    events.EnterActive: enter_active,
}
