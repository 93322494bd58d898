"""The PROXY protocol header (HAProxy's, versions 1 and 2), parsed without I/O.

A TCP load balancer in front of several nodes hides the client: every
connection a node sees comes from the balancer. HAProxy (``send-proxy`` /
``send-proxy-v2``), AWS NLB and others then write one header before the
client's first byte, naming the client's address. This module turns those
bytes into a :class:`ProxyHeader`; whether to believe it (only from a
trusted balancer) is the server's decision, not this parser's.

The parser is fed by the caller, which reads from the connection. Its
:attr:`~ProxyHeaderParser.want` says how many bytes may be read next without
reading past the header: the client's own bytes follow it at once (an FTP
client waits for the 220, but a data connection's upload does not), and they
must stay in the socket for whoever reads the connection next. So the
header is read in a few exact steps (two for version 2; for version 1, small
steps towards its CRLF) and nothing is ever pushed back.

Hostile input is refused early and cheaply: every byte is checked against
the signatures as it arrives, a version 1 line has at most 107 bytes, a
version 2 header at most ``max_length``, and its TLVs (extensions this
server does not use) are walked only to check that they fit.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

#: The twelve bytes every version 2 header starts with.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: What every version 1 header starts with.
V1_PREFIX = b"PROXY "
#: The longest version 1 line the specification allows, CRLF included.
V1_MAX = 107
#: The shortest header of either version (``PROXY UNKNOWN\r\n``): always safe to read first.
_MIN_HEADER = 15
#: Version 2's fixed part: signature, version/command, family/transport, length.
_V2_FIXED = 16
#: Default cap on a whole version 2 header. Addresses take 216 bytes at most
#: (AF_UNIX); the rest is TLVs, which HAProxy keeps to a few hundred bytes
#: (ALPN, authority, unique id, SSL details). The 64 KiB the length field
#: allows would only be a way to make a node buffer.
V2_MAX_DEFAULT = 1024

_V2_LOCAL = 0x0
_V2_PROXY = 0x1
_AF_UNSPEC = 0x0
_AF_INET = 0x1
_AF_INET6 = 0x2
_AF_UNIX = 0x3
_STREAM = 0x1
#: Address block sizes by family (source and destination address, then ports).
_ADDRESS_SIZE = {_AF_UNSPEC: 0, _AF_INET: 12, _AF_INET6: 36, _AF_UNIX: 216}


class ProxyHeaderError(ValueError):
    """The bytes are not a valid PROXY header; the connection must be dropped."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What the balancer said about the connection.

    ``source`` is None when the header names no client: a version 2 LOCAL
    command (the balancer's own health check), version 1 ``UNKNOWN``, or a
    family with no IP address. The specification says the receiver then uses
    the connection's real endpoints.
    """

    version: int
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    #: Bytes the header took on the wire.
    length: int

    @property
    def local(self) -> bool:
        """Whether the connection speaks for the balancer itself (no client address)."""
        return self.source is None


class ProxyHeaderParser:
    """Feed bytes until :meth:`feed` returns the header (or raises ``ProxyHeaderError``).

    Never give it more than :attr:`want` bytes at a time: then it never holds
    a byte past the header, and the caller's socket keeps the client's.
    """

    __slots__ = ("_buffer", "_max", "_total", "header")

    def __init__(self, max_length: int = V2_MAX_DEFAULT) -> None:
        self._buffer = bytearray()
        self._max = max(_V2_FIXED + _ADDRESS_SIZE[_AF_UNIX], max_length)
        #: Version 2's whole length, once its fixed part is in.
        self._total = 0
        self.header: ProxyHeader | None = None

    @property
    def empty(self) -> bool:
        """Whether no byte came yet (a connection closed now is a probe, not an attack)."""
        return not self._buffer

    @property
    def want(self) -> int:
        """How many bytes may be read next without passing the header's end (0: done)."""
        if self.header is not None:
            return 0
        buf = self._buffer
        have = len(buf)
        if have < _MIN_HEADER:
            return _MIN_HEADER - have
        if buf[0] == V2_SIGNATURE[0]:
            if have < _V2_FIXED:
                return _V2_FIXED - have
            return self._total - have
        # Version 1 ends at CRLF: one byte if the last one was the CR, else two.
        return 1 if buf[-1] == 0x0D else 2

    def feed(self, data: bytes) -> ProxyHeader | None:
        """Take ``data`` (at most :attr:`want` bytes); the header once complete, else None."""
        if self.header is not None:
            raise ProxyHeaderError("header already complete")
        if not data:
            raise ProxyHeaderError("connection closed inside the PROXY header")
        if len(data) > self.want:
            raise ProxyHeaderError("fed past the end of the header")
        start = len(self._buffer)
        self._buffer += data
        buf = self._buffer
        if buf[0] == V2_SIGNATURE[0]:
            self._check_prefix(V2_SIGNATURE, start)
            if len(buf) < _V2_FIXED:
                return None
            if not self._total:
                self._total = self._v2_length()
            if len(buf) < self._total:
                return None
            self.header = _parse_v2(bytes(buf))
        else:
            self._check_prefix(V1_PREFIX, start)
            end = buf.find(b"\r\n", max(0, start - 1))
            if end < 0:
                if len(buf) >= V1_MAX:
                    raise ProxyHeaderError("version 1 header longer than 107 bytes")
                if b"\n" in data or b"\r" in buf[:-1]:
                    raise ProxyHeaderError("stray line break in a version 1 header")
                return None
            if end + 2 != len(buf):  # only a malformed line ends before what was read
                raise ProxyHeaderError("malformed version 1 header")
            self.header = _parse_v1(bytes(buf[:end]), end + 2)
        return self.header

    def _check_prefix(self, prefix: bytes, start: int) -> None:
        """Refuse at the first byte that strays from the signature (an HTTP probe, a client)."""
        stop = min(len(prefix), len(self._buffer))
        if start < stop and self._buffer[start:stop] != prefix[start:stop]:
            raise ProxyHeaderError("not a PROXY protocol header")

    def _v2_length(self) -> int:
        buf = self._buffer
        if buf[12] >> 4 != 2:
            raise ProxyHeaderError(f"unsupported PROXY protocol version {buf[12] >> 4}")
        total = _V2_FIXED + int.from_bytes(buf[14:16], "big")
        if total > self._max:
            raise ProxyHeaderError(f"version 2 header of {total} bytes is over the cap")
        return total


def _parse_v2(data: bytes) -> ProxyHeader:
    command = data[12] & 0x0F
    family, transport = data[13] >> 4, data[13] & 0x0F
    length = len(data)
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise ProxyHeaderError(f"unknown version 2 command {command}")
    if family not in _ADDRESS_SIZE:
        raise ProxyHeaderError(f"unknown version 2 address family {family}")
    size = _ADDRESS_SIZE[family]
    if _V2_FIXED + size > length:
        raise ProxyHeaderError("version 2 address block is cut short")
    _check_tlvs(data, _V2_FIXED + size)
    if command == _V2_LOCAL:
        return ProxyHeader(2, None, None, length)
    if transport != _STREAM and family != _AF_UNSPEC:
        raise ProxyHeaderError("version 2 header for a datagram or unknown transport")
    block = data[_V2_FIXED : _V2_FIXED + size]
    if family == _AF_INET:
        src: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(block[0:4])
        dst: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(block[4:8])
        ports = block[8:12]
    elif family == _AF_INET6:
        src, dst = ipaddress.IPv6Address(block[0:16]), ipaddress.IPv6Address(block[16:32])
        ports = block[32:36]
    else:  # UNSPEC or UNIX: no client address to take
        return ProxyHeader(2, None, None, length)
    sport, dport = int.from_bytes(ports[0:2], "big"), int.from_bytes(ports[2:4], "big")
    return ProxyHeader(2, (str(src), sport), (str(dst), dport), length)


def _check_tlvs(data: bytes, offset: int) -> None:
    """The TLVs after the addresses must tile the rest exactly; their contents are skipped."""
    end = len(data)
    while offset < end:
        if end - offset < 3:
            raise ProxyHeaderError("truncated TLV in a version 2 header")
        offset += 3 + int.from_bytes(data[offset + 1 : offset + 3], "big")
        if offset > end:
            raise ProxyHeaderError("TLV runs past the end of a version 2 header")


def _parse_v1(line: bytes, length: int) -> ProxyHeader:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("non-ASCII version 1 header") from None
    fields = text.split(" ")
    if len(fields) >= 2 and fields[1] == "UNKNOWN":
        return ProxyHeader(1, None, None, length)
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("malformed version 1 header")
    kind = ipaddress.IPv4Address if fields[1] == "TCP4" else ipaddress.IPv6Address
    try:
        src, dst = kind(fields[2]), kind(fields[3])
    except ValueError:
        raise ProxyHeaderError("bad address in a version 1 header") from None
    return ProxyHeader(1, (str(src), _v1_port(fields[4])), (str(dst), _v1_port(fields[5])), length)


def _v1_port(text: str) -> int:
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0"):
        raise ProxyHeaderError("bad port in a version 1 header")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError("bad port in a version 1 header")
    return port


def encode_v2(
    source: tuple[str, int] | None,
    destination: tuple[str, int] | None = None,
    *,
    tlvs: bytes = b"",
) -> bytes:
    """A version 2 header (LOCAL when ``source`` is None): for tests and clients behind one."""
    if source is None:
        body = tlvs
        return V2_SIGNATURE + bytes([0x20 | _V2_LOCAL, 0]) + len(body).to_bytes(2, "big") + body
    src = ipaddress.ip_address(source[0])
    dst = ipaddress.ip_address(destination[0]) if destination else type(src)(0)
    if dst.version != src.version:
        raise ValueError("source and destination must be of one address family")
    dport = destination[1] if destination else 0
    family = _AF_INET if src.version == 4 else _AF_INET6
    body = src.packed + dst.packed + source[1].to_bytes(2, "big") + dport.to_bytes(2, "big") + tlvs
    head = bytes([0x20 | _V2_PROXY, (family << 4) | _STREAM])
    return V2_SIGNATURE + head + len(body).to_bytes(2, "big") + body
