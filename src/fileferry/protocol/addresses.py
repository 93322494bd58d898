"""Parsing and formatting the host-port arguments of PORT, EPRT, PASV and EPSV.

These are pure text transforms. Whether an address is *acceptable* (same host
as the control connection, unprivileged port: RFC 2577's bounce defence) is
policy and is decided by the server, which knows the peer.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

#: EPRT/EPSV network protocol numbers (RFC 2428).
PROTO_IPV4 = 1
PROTO_IPV6 = 2


class AddressError(ValueError):
    """The argument is not a well-formed address; answered 501 (or 522)."""

    def __init__(self, message: str, reply_code: int = 501) -> None:
        super().__init__(message)
        self.reply_code = reply_code


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int


def parse_port(arg: str) -> HostPort:
    """Parse PORT's ``h1,h2,h3,h4,p1,p2``."""
    fields = arg.strip().split(",")
    if len(fields) != 6:
        raise AddressError("PORT needs six comma-separated numbers")
    try:
        nums = [int(f) for f in fields]
    except ValueError:
        raise AddressError("PORT fields must be numbers") from None
    if any(
        not 0 <= n <= 255 or not (f.strip().isascii() and f.strip().isdigit())
        for n, f in zip(nums, fields, strict=True)
    ):
        raise AddressError("PORT fields must be 0-255")
    host = ".".join(str(n) for n in nums[:4])
    return HostPort(host, nums[4] * 256 + nums[5])


def parse_eprt(arg: str) -> HostPort:
    """Parse EPRT's ``<d>proto<d>address<d>port<d>`` with any delimiter ``d``."""
    if len(arg) < 4:
        raise AddressError("Malformed EPRT argument")
    d = arg[0]
    if not 33 <= ord(d) <= 126 or d.isalnum():
        raise AddressError("Malformed EPRT delimiter")
    fields = arg.split(d)
    if len(fields) != 5 or fields[0] or fields[4]:
        raise AddressError("Malformed EPRT argument")
    proto, host, port_text = fields[1], fields[2], fields[3]
    if proto not in ("1", "2"):
        raise AddressError("Network protocol not supported, use (1,2)", 522)
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise AddressError("Malformed EPRT address") from None
    if (proto == "1") != (addr.version == 4):
        raise AddressError("EPRT address does not match its protocol")
    # isdigit() alone admits "²" and thousands of digits, both of which int() refuses.
    digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    if not digits or not 0 < int(port_text) <= 65535:
        raise AddressError("Malformed EPRT port")
    return HostPort(str(addr), int(port_text))


def parse_epsv(arg: str) -> int | str | None:
    """EPSV's argument: ``None``, a protocol number, or ``"ALL"``."""
    arg = arg.strip()
    if not arg:
        return None
    if arg.upper() == "ALL":
        return "ALL"
    if arg in ("1", "2"):
        return int(arg)
    raise AddressError("Network protocol not supported, use (1,2)", 522)


def format_pasv(host: str, port: int) -> str:
    """The text of a 227 reply; ``host`` must be IPv4."""
    h = host.replace(".", ",")
    return f"Entering Passive Mode ({h},{port >> 8},{port & 0xFF})."


def format_epsv(port: int) -> str:
    return f"Entering Extended Passive Mode (|||{port}|)"


@functools.lru_cache(maxsize=4096)
def unmap(host: str) -> str:
    """``::ffff:1.2.3.4`` → ``1.2.3.4``; strip an IPv6 scope; others unchanged.

    Cached: it is a pure function of the text, asked several times per
    transfer (EPSV, every accepted data connection, log lines) with the same
    few peer addresses, and ``ipaddress`` parsing costs ~15 µs a call.
    """
    host = host.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def same_host(a: str, b: str) -> bool:
    """Whether two textual addresses name the same host (mapping-aware)."""
    return unmap(a) == unmap(b)
