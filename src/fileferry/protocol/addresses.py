"""Parsing and formatting the host-port arguments of PORT, EPRT, PASV and EPSV.

These are pure text transforms, for both ends: the server parses PORT and
EPRT and formats the 227 and 229 replies, the client formats PORT and EPRT
and parses 227 and 229. Whether an address is *acceptable* (same host as the
control connection, unprivileged port: RFC 2577's bounce defence) is policy
and is decided by whichever side knows the peer.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

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


#: Six numbers anywhere in a 227 reply: RFC 1123 4.1.2.6 tells clients to scan
#: for them, since servers word the reply (and place the parentheses) freely.
_PASV_REPLY = re.compile(r"(?<![0-9])([0-9]{1,3}(?:,[0-9]{1,3}){5})(?![0-9])")
#: ``(<d><d><d>port<d>)`` in a 229 reply (RFC 2428), any printable delimiter.
_EPSV_REPLY = re.compile(r"\(([\x21-\x7e])\1\1([0-9]{1,5})\1\)")


def parse_pasv_reply(text: str) -> HostPort:
    """The host and port a 227 reply announces (``text`` without the code).

    What the client does with the host is its own policy: fileferry's
    client connects to the control connection's peer instead.
    """
    match = _PASV_REPLY.search(text)
    if match is None:
        raise AddressError("no h1,h2,h3,h4,p1,p2 in the 227 reply")
    nums = [int(n) for n in match.group(1).split(",")]
    if any(n > 255 for n in nums):
        raise AddressError("227 reply has a number over 255")
    port = nums[4] * 256 + nums[5]
    if port == 0:
        raise AddressError("227 reply announces port 0")
    return HostPort(".".join(str(n) for n in nums[:4]), port)


def parse_epsv_reply(text: str) -> int:
    """The port a 229 reply announces (``text`` without the code)."""
    match = _EPSV_REPLY.search(text)
    if match is None:
        raise AddressError("no (|||port|) in the 229 reply")
    port = int(match.group(2))
    if not 0 < port <= 65535:
        raise AddressError("229 reply announces a port out of range")
    return port


def _checked_port(port: int) -> int:
    if not 0 < port <= 65535:
        raise AddressError(f"port {port} out of range")
    return port


def format_port(host: str, port: int) -> str:
    """PORT's argument; ``host`` must be IPv4 (or IPv4-mapped IPv6)."""
    addr = parse_host(host)
    if not isinstance(addr, ipaddress.IPv4Address):
        raise AddressError(f"PORT cannot carry the address {host}")
    port = _checked_port(port)
    return f"{str(addr).replace('.', ',')},{port >> 8},{port & 0xFF}"


def format_eprt(host: str, port: int) -> str:
    """EPRT's argument. IPv4-mapped addresses go as IPv4 and a zone id is left
    out: RFC 2428 has no syntax for one, and the server's names differ anyway."""
    addr = parse_host(host)
    if addr is None:
        raise AddressError(f"EPRT needs an IP address, not {host}")
    port = _checked_port(port)
    if isinstance(addr, ipaddress.IPv4Address):
        return f"|{PROTO_IPV4}|{addr}|{port}|"
    return f"|{PROTO_IPV6}|{addr.compressed.split('%', 1)[0]}|{port}|"


@functools.lru_cache(maxsize=4096)
def parse_host(host: str) -> IPAddress | None:
    """The address a textual host names: IPv4-mapped IPv6 as the IPv4 address
    it maps, a zone id (``%eth0``) kept; ``None`` for a name or garbage."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def same_address(a: str, b: str) -> bool:
    """Whether two socket addresses are one host, zone ids included.

    Stricter than :func:`same_host`: both sides come from the kernel here
    (the client's control peer and whoever connected to its listener), so
    the zone is spelled alike, and ``fe80::1`` on another link is another
    host. Names never match: only an address can be compared.
    """
    first = parse_host(a)
    return first is not None and first == parse_host(b)


@functools.lru_cache(maxsize=4096)
def unmap(host: str) -> str:
    """``::ffff:1.2.3.4`` → ``1.2.3.4``; strip an IPv6 scope; others unchanged.

    Cached: it is a pure function of the text, asked several times per
    transfer (EPSV, every accepted data connection, log lines) with the same
    few peer addresses, and ``ipaddress`` parsing is slow next to a dict hit
    (figures in ``bench/notes.md``).
    """
    host = host.split("%", 1)[0]
    addr = parse_host(host)
    return host if addr is None else str(addr)


def same_host(a: str, b: str) -> bool:
    """Whether two textual addresses name the same host (mapping-aware)."""
    return unmap(a) == unmap(b)
