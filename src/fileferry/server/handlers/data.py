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

from fileferry.observability import events as seen
from fileferry.protocol import events
from fileferry.protocol.addresses import format_epsv, format_pasv, same_host, unmap
from fileferry.protocol.replies import Reply
from fileferry.server.ports import NoFreePort, ShareReached

if TYPE_CHECKING:
    from fileferry.server.context import Handler, SessionContext


@functools.lru_cache(maxsize=256)
def _is_ipv4(host: str) -> bool:
    """Whether a local address is IPv4 (cached: asked on every PASV/EPSV)."""
    try:
        return ipaddress.ip_address(unmap(host)).version == 4
    except ValueError:
        return False


async def enter_passive(ctx: SessionContext, ev: events.EnterPassive) -> Reply:
    control_v4 = _is_ipv4(ctx.local_host)
    own = 1 if control_v4 else 2
    if ev.protocol is not None and ev.protocol != own:
        return Reply(522, f"Network protocol not supported, use ({own})")
    masquerade = ctx.config.data.masquerade_address
    if not ev.extended and not control_v4 and masquerade is None:
        return Reply(425, "PASV is IPv4 only; use EPSV on an IPv6 connection.")
    try:
        port = ctx.data.listen()
    except ShareReached as exc:
        ctx.emit(seen.PassiveShareReached(ctx.origin, exc.held))
        return Reply(425, "Your address holds its share of the passive ports; try again later.")
    except NoFreePort:
        ctx.emit(seen.PassivePortsExhausted(ctx.origin))
        return Reply(425, "No free passive port; try again later.")
    except OSError:
        return Reply(425, "Cannot open a passive listener.")
    if ev.extended:
        return Reply(229, format_epsv(port))
    host = masquerade or unmap(ctx.local_host)
    return Reply(227, format_pasv(host, port))


async def enter_active(ctx: SessionContext, ev: events.EnterActive) -> Reply:
    host = ev.host
    if ipaddress.ip_address(host).is_unspecified:
        # lftp sends "EPRT |2|::|port|" on loopback: "my own address", which
        # can only mean the control peer, so it opens no bounce.
        host = unmap(ctx.peer_host)
    if not same_host(host, ctx.peer_host):
        ctx.emit(seen.PortRefused(ctx.origin, ev.host, None, "foreign address"))
        return Reply(501, "Rejected: data connections go only to your own address.")
    if ev.port < 1024:
        ctx.emit(seen.PortRefused(ctx.origin, ev.host, ev.port, "privileged port"))
        return Reply(501, "Rejected: privileged port.")
    if ctx.data.family == socket.AF_INET and ":" in host:
        return Reply(522, "Network protocol not supported, use (1)")
    ctx.data.set_active(unmap(host), ev.port)
    return Reply(200, f"{'EPRT' if ev.extended else 'PORT'} command successful.")


HANDLERS: dict[type[events.Event], Handler] = {
    events.EnterPassive: enter_passive,
    events.EnterActive: enter_active,
}
