"""Nodes behind a TCP balancer: who the client really is, from a PROXY header.

With ``--proxy-protocol`` every control connection comes from the balancer,
which writes a PROXY header (v1 or v2) naming the client before any other
byte. The header is believed only from a ``--trusted-proxy`` network: from
anyone else it would let a client pick the address that bans, caps,
``--allow-network`` and the PORT check judge it by. So a connection from
elsewhere is refused before a byte is read, and a header that is malformed,
oversized or slower than ``proxy_header_timeout`` ends the connection. A
LOCAL header (the balancer's own health check) keeps the real peer.

Passive data connections behind the balancer (docs/scale-out.md): each node
announces the balancer's address (``--masquerade-address``) and its own
``--passive-ports`` range, which the balancer forwards to that node. Such a
connection arrives from the balancer, not from the client, so the usual
"only from the control peer" check cannot pass on its own. It is accepted
only if it too starts with a PROXY header (``send-proxy-v2`` on the passive
range) naming the control connection's client; one from the balancer
without a header, or naming anyone else, is dropped and the wait goes on.
A connection straight from the client's own address (a node that announces
itself) needs no header. Nothing is trusted that the header did not prove.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable

from fileferry.protocol.addresses import unmap
from fileferry.protocol.proxyheader import ProxyHeader, ProxyHeaderError, ProxyHeaderParser

log = logging.getLogger("fileferry.proxy")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The balancer networks whose PROXY headers are believed, and reading one."""

    def __init__(self, networks: Iterable[str], header_timeout: float) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks
        )
        self.header_timeout = header_timeout
        # Per instance, so that two servers in one process keep their own answers.
        self.trusts = functools.lru_cache(maxsize=1024)(self._trusts)

    def _trusts(self, host: str) -> bool:
        """Whether ``host`` (a socket's peer address) is one of the balancers."""
        try:
            addr = ipaddress.ip_address(unmap(host))
        except ValueError:
            return False
        return any(addr in net for net in self.networks)

    async def control_client(self, reader: asyncio.StreamReader, peer: str) -> str | None:
        """The client's address for a new control connection, or None to drop it (logged)."""
        return await self._client(reader.read, peer)

    async def implicit_client(self, sock: socket.socket, peer: str) -> str | None:
        """:meth:`control_client` for implicit FTPS: the header comes before the TLS hello."""
        loop = asyncio.get_running_loop()
        return await self._client(functools.partial(loop.sock_recv, sock), peer)

    async def _client(self, recv: Callable[[int], Awaitable[bytes]], peer: str) -> str | None:
        if not self.trusts(peer):
            log.warning("refused %s: not a trusted proxy (--proxy-protocol is on)", unmap(peer))
            return None
        parser = ProxyHeaderParser()
        try:
            async with asyncio.timeout(self.header_timeout):
                while (header := parser.feed(await recv(parser.want))) is None:
                    pass
        except TimeoutError:
            log.warning("refused %s: no complete PROXY header in time", unmap(peer))
            return None
        except ProxyHeaderError as exc:
            if parser.empty:
                # A health check that connects and closes: nothing to report.
                log.debug("proxy %s closed before a PROXY header", unmap(peer))
            else:
                log.warning("refused %s: bad PROXY header: %s", unmap(peer), exc)
            return None
        except (ConnectionError, OSError):
            return None
        return client_of(header, peer)

    async def data_client(self, sock: socket.socket, peer: str, deadline: float) -> str | None:
        """The client a data connection from the balancer speaks for (None: no proof).

        ``deadline`` (loop time) is the passive listener's; the header must
        also come within the header timeout, so that a connection sending
        nothing cannot hold the wait of the one that would.
        """
        loop = asyncio.get_running_loop()
        parser = ProxyHeaderParser()
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + self.header_timeout)):
                while (header := parser.feed(await loop.sock_recv(sock, parser.want))) is None:
                    pass
        except (TimeoutError, ProxyHeaderError, ConnectionError, OSError) as exc:
            log.warning("refused data connection from proxy %s: %s", unmap(peer), _why(exc))
            return None
        return header.source[0] if header.source is not None else None


def client_of(header: ProxyHeader, peer: str) -> str:
    """The address a header speaks for: its source, or the peer itself (LOCAL, UNKNOWN)."""
    return header.source[0] if header.source is not None else peer


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no complete PROXY header in time"
    if isinstance(exc, ProxyHeaderError):
        return f"bad PROXY header: {exc}"
    return "connection failed"
