"""The PROXY header parser: both versions, hostile bytes, and never a byte too many."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fileferry.protocol.proxyheader import (
    V1_MAX,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderParser,
    encode_v2,
)

CLIENT_BYTES = b"USER anonymous\r\n"


def read(
    stream: bytes, *, step: int | None = None, max_length: int = 1024
) -> tuple[ProxyHeader, bytes]:
    """Read a header off ``stream`` as a server does (at most ``want`` at a time,
    ``step`` bytes at most per read); the header and what stayed unread."""
    parser = ProxyHeaderParser(max_length)
    pos = 0
    while True:
        n = parser.want if step is None else min(step, parser.want)
        chunk = stream[pos : pos + n]
        pos += len(chunk)
        header = parser.feed(chunk)
        if header is not None:
            assert parser.want == 0
            return header, stream[pos:]


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + len(body).to_bytes(2, "big") + body


# --- version 1 ---------------------------------------------------------------------


def test_v1_tcp4_names_the_client_and_leaves_its_bytes_unread() -> None:
    header, rest = read(b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 21\r\n" + CLIENT_BYTES)
    assert header == ProxyHeader(1, ("192.0.2.7", 40000), ("10.0.0.1", 21), 40)
    assert rest == CLIENT_BYTES


def test_v1_tcp6() -> None:
    header, rest = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 2121\r\n" + CLIENT_BYTES)
    assert header.source == ("2001:db8::7", 65535)
    assert header.destination == ("2001:db8::1", 2121)
    assert rest == CLIENT_BYTES


@pytest.mark.parametrize("line", [b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ff::1 ::1 1 2\r\n"])
def test_v1_unknown_means_use_the_real_peer(line: bytes) -> None:
    header, rest = read(line + CLIENT_BYTES)
    assert header.local and header.source is None
    assert rest == CLIENT_BYTES


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 192.0.2.7 10.0.0.1 40000\r\n",  # a field missing
        b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 21 x\r\n",  # one too many
        b"PROXY TCP4 2001:db8::1 10.0.0.1 1 21\r\n",  # v6 address under TCP4
        b"PROXY TCP6 192.0.2.7 ::1 1 21\r\n",  # v4 address under TCP6
        b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 21\r\n",  # port out of range
        b"PROXY TCP4 192.0.2.7 10.0.0.1 0400 21\r\n",  # leading zero
        b"PROXY TCP4 192.0.2.7 10.0.0.1 -1 21\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 \xd9\xa1 21\r\n",  # not ASCII
        b"PROXY TCP4  192.0.2.7 10.0.0.1 1 21\r\n",  # two spaces
        b"PROXY UDP4 192.0.2.7 10.0.0.1 1 21\r\n",
        b"PROXY TCP4 192.0.2.7 10.0.0.1 1 21\n",  # LF without CR
        b"PROXY TCP4 192.0.2.7\r10.0.0.1 1 21\r\n",  # a stray CR
        b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\r\r\n",
        b"proxy TCP4 192.0.2.7 10.0.0.1 1 21\r\n",  # case matters
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # an HTTP probe
        b"USER anonymous\r\n",  # a client that skipped the balancer
    ],
)
def test_v1_malformed_lines_are_refused(line: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        read(line + CLIENT_BYTES)


def test_v1_refused_at_the_first_wrong_byte() -> None:
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyHeaderError):
        parser.feed(b"G")


def test_v1_longer_than_107_bytes_is_refused_without_reading_more() -> None:
    line = b"PROXY TCP6 " + b"1" * 200 + b"\r\n"
    parser = ProxyHeaderParser()
    pos = 0
    with pytest.raises(ProxyHeaderError, match="107"):
        while True:
            n = parser.want
            parser.feed(line[pos : pos + n])
            pos += n
    assert pos <= V1_MAX


def test_longest_v1_line_is_accepted() -> None:
    addr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = f"PROXY TCP6 {addr} {addr} 65535 65535\r\n".encode()
    header, rest = read(line + CLIENT_BYTES)
    assert header.source == (str(ipaddress.IPv6Address(addr)), 65535)
    assert rest == CLIENT_BYTES
    unknown = f"PROXY UNKNOWN {addr} {addr} 65535 65535\r\n".encode()
    assert len(unknown) == V1_MAX  # the specification's worst case
    header, rest = read(unknown + CLIENT_BYTES)
    assert header.local
    assert rest == CLIENT_BYTES


# --- version 2 ---------------------------------------------------------------------


def test_v2_inet_with_tlvs_skipped() -> None:
    tlvs = b"\x01\x00\x02h2" + b"\x05\x00\x04abcd" + b"\xe0\x00\x00"  # ALPN, unique id, custom
    wire = encode_v2(("198.51.100.9", 51000), ("10.0.0.1", 2121), tlvs=tlvs)
    header, rest = read(wire + CLIENT_BYTES)
    assert header == ProxyHeader(2, ("198.51.100.9", 51000), ("10.0.0.1", 2121), len(wire))
    assert rest == CLIENT_BYTES


def test_v2_inet6() -> None:
    wire = encode_v2(("2001:db8::9", 1), ("2001:db8::1", 2))
    header, rest = read(wire + CLIENT_BYTES)
    assert header.source == ("2001:db8::9", 1)
    assert rest == CLIENT_BYTES


def test_encode_v2_without_a_destination_and_with_mixed_families() -> None:
    assert read(encode_v2(("2001:db8::9", 7)))[0].destination == ("::", 0)
    assert read(encode_v2(("192.0.2.9", 7)))[0].destination == ("0.0.0.0", 0)
    with pytest.raises(ValueError, match="one address family"):
        encode_v2(("2001:db8::9", 7), ("10.0.0.1", 21))


def test_v2_local_is_the_balancer_itself() -> None:
    # A LOCAL header may still carry an address block: it is ignored.
    wire = v2(0x0, 0x11, bytes(12))
    header, rest = read(wire + CLIENT_BYTES)
    assert header.local
    assert rest == CLIENT_BYTES
    assert read(encode_v2(None))[0].local


@pytest.mark.parametrize("family", [0x00, 0x31])  # UNSPEC, UNIX stream
def test_v2_proxy_without_an_ip_family_keeps_the_real_peer(family: int) -> None:
    body = bytes(216) if family == 0x31 else b""
    header, _ = read(v2(0x1, family, body))
    assert header.source is None


@pytest.mark.parametrize(
    "wire",
    [
        V2_SIGNATURE + bytes([0x10 | 1, 0x11]) + (12).to_bytes(2, "big") + bytes(12),  # version 1
        V2_SIGNATURE + bytes([0x30 | 1, 0x11]) + (12).to_bytes(2, "big") + bytes(12),  # version 3
        v2(0x2, 0x11, bytes(12)),  # unknown command
        v2(0x1, 0x41, bytes(12)),  # unknown family
        v2(0x1, 0x12, bytes(12)),  # datagram
        v2(0x1, 0x11, bytes(11)),  # address block cut short
        v2(0x1, 0x21, bytes(12)),  # INET6 needs 36
        v2(0x1, 0x11, bytes(12) + b"\x01\x00"),  # truncated TLV
        v2(0x1, 0x11, bytes(12) + b"\x01\x00\x05ab"),  # TLV past the end
        v2(0x0, 0x00, b"\x01\x00\x05ab"),  # even in a LOCAL header
        V2_SIGNATURE[:-1] + b"X" + bytes([0x21, 0x11, 0, 12]) + bytes(12),  # bad signature
    ],
)
def test_v2_malformed_headers_are_refused(wire: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        read(wire + CLIENT_BYTES)


def test_v2_over_the_cap_is_refused_after_its_fixed_part() -> None:
    wire = v2(0x1, 0x11, bytes(12) + b"\xe0" + (4000).to_bytes(2, "big") + bytes(4000))
    parser = ProxyHeaderParser(max_length=1024)
    assert parser.feed(wire[: parser.want]) is None
    with pytest.raises(ProxyHeaderError, match="cap"):
        parser.feed(wire[15 : 15 + parser.want])
    # a larger cap takes it
    header, _ = read(wire, max_length=8192)
    assert header.source == ("0.0.0.0", 0)


def test_closed_before_a_byte_and_inside_the_header() -> None:
    parser = ProxyHeaderParser()
    assert parser.empty
    with pytest.raises(ProxyHeaderError, match="closed"):
        parser.feed(b"")
    parser = ProxyHeaderParser()
    parser.feed(V2_SIGNATURE[:5])
    assert not parser.empty
    with pytest.raises(ProxyHeaderError, match="closed"):
        parser.feed(b"")


def test_feeding_past_want_or_after_the_end_is_an_error() -> None:
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyHeaderError):
        parser.feed(b"PROXY UNKNOWN\r\nX")
    parser = ProxyHeaderParser()
    assert parser.feed(b"PROXY UNKNOWN\r\n") is not None
    with pytest.raises(ProxyHeaderError):
        parser.feed(b"x")


# --- properties and hostile input --------------------------------------------------

addresses4 = st.ip_addresses(v=4).map(str)
addresses6 = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 65535)
tlv = st.builds(
    lambda kind, value: bytes([kind]) + len(value).to_bytes(2, "big") + value,
    st.integers(0, 255),
    st.binary(max_size=60),
)


@settings(max_examples=300, deadline=None)
@given(
    src=st.one_of(addresses4, addresses6),
    sport=ports,
    dport=ports,
    tlvs=st.lists(tlv, max_size=8).map(b"".join),
    step=st.integers(1, 40),
    tail=st.binary(max_size=64),
)
def test_v2_round_trip_in_any_chunking(
    src: str, sport: int, dport: int, tlvs: bytes, step: int, tail: bytes
) -> None:
    dst = "10.1.2.3" if ":" not in src else "2001:db8::1"
    wire = encode_v2((src, sport), (dst, dport), tlvs=tlvs)
    header, rest = read(wire + tail, step=step)
    assert header.source == (str(ipaddress.ip_address(src)), sport)
    assert header.destination == (dst, dport)
    assert header.length == len(wire)
    assert rest == tail  # never a byte of the client's taken


@settings(max_examples=300, deadline=None)
@given(
    v6=st.booleans(), a=st.data(), sport=ports, dport=ports, step=st.integers(1, 9),
    tail=st.binary(max_size=64),
)  # fmt: skip
def test_v1_round_trip_in_any_chunking(
    v6: bool, a: st.DataObject, sport: int, dport: int, step: int, tail: bytes
) -> None:
    src = a.draw(addresses6 if v6 else addresses4)
    dst = a.draw(addresses6 if v6 else addresses4)
    line = f"PROXY TCP{6 if v6 else 4} {src} {dst} {sport} {dport}\r\n".encode()
    header, rest = read(line + tail, step=step)
    assert header == ProxyHeader(1, (src, sport), (dst, dport), len(line))
    assert rest == tail


def _outcome(stream: bytes, max_length: int = 1024) -> tuple[ProxyHeader | None, int]:
    """Read ``stream`` as a server would; (header or None if refused, bytes consumed)."""
    parser = ProxyHeaderParser(max_length)
    pos = 0
    try:
        while True:
            chunk = stream[pos : pos + parser.want]
            pos += len(chunk)
            header = parser.feed(chunk)
            if header is not None:
                return header, pos
    except ProxyHeaderError:
        return None, pos


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_refused_cleanly(data: bytes) -> None:
    header, used = _outcome(data)
    assert used <= max(V1_MAX, 1024)
    if header is not None:
        assert header.length == used


@settings(max_examples=500, deadline=None)
@given(
    base=st.sampled_from(
        [
            encode_v2(("192.0.2.1", 1000), ("10.0.0.1", 21), tlvs=b"\x01\x00\x02h2"),
            encode_v2(("2001:db8::5", 1000), ("2001:db8::1", 21)),
            b"PROXY TCP4 192.0.2.1 10.0.0.1 1000 21\r\n",
            b"PROXY TCP6 2001:db8::5 2001:db8::1 1000 21\r\n",
        ]
    ),
    where=st.integers(0, 200),
    byte=st.integers(0, 255),
    cut=st.integers(0, 200),
)
def test_mutated_headers_parse_or_are_refused_never_overread(
    base: bytes, where: int, byte: int, cut: int
) -> None:
    wire = bytearray(base)
    wire[where % len(wire)] = byte
    stream = bytes(wire[: max(cut, 1)] if cut < len(wire) else wire) + CLIENT_BYTES
    header, used = _outcome(stream)
    if header is not None:
        assert header.length == used  # stopped exactly at the header's end
        if header.source is not None:
            ipaddress.ip_address(header.source[0])
            assert 0 <= header.source[1] <= 65535
