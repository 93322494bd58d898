"""The client's side of the address syntax: 227/229 replies read, PORT/EPRT written,
socket addresses compared; each checked against the server's side of the same text."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fileferry.protocol.addresses import (
    AddressError,
    HostPort,
    format_eprt,
    format_epsv,
    format_pasv,
    format_port,
    parse_eprt,
    parse_epsv_reply,
    parse_host,
    parse_pasv_reply,
    parse_port,
    same_address,
)

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(1, 65535)

# --- 227 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Entering Passive Mode (127,0,0,1,4,1).", HostPort("127.0.0.1", 1025)),
        ("Entering passive mode (10,1,2,3,156,64)", HostPort("10.1.2.3", 40000)),
        ("Entering Passive Mode 192,168,0,9,0,21", HostPort("192.168.0.9", 21)),
        ("=127,0,0,1,255,255", HostPort("127.0.0.1", 65535)),
        ("Passive (v1.2) at (1,2,3,4,0,1)", HostPort("1.2.3.4", 1)),
    ],
)
def test_parse_pasv_reply(text, expected):
    assert parse_pasv_reply(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Entering Passive Mode",
        "(127,0,0,1,4)",
        "(256,0,0,1,4,1)",
        "(127,0,0,1,4,256)",
        "(127,0,0,1,0,0)",
        "(1270,0,0,1,4,1)",
        "(127,0,0,1,4,1000)",
        "(\u0661,0,0,1,4,1)",
        "(127,0,0,1,4,\u0661)",
    ],
)
def test_parse_pasv_reply_refuses(text):
    with pytest.raises(AddressError):
        parse_pasv_reply(text)


@settings(max_examples=200, deadline=None)
@given(host=ipv4, port=ports)
def test_the_servers_227_reads_back(host, port):
    assert parse_pasv_reply(format_pasv(host, port)) == HostPort(host, port)


# --- 229 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "port"),
    [
        ("Entering Extended Passive Mode (|||5282|)", 5282),
        ("Entering Extended Passive Mode (!!!21!)", 21),
        ("ok (|||65535|).", 65535),
    ],
)
def test_parse_epsv_reply(text, port):
    assert parse_epsv_reply(text) == port


@pytest.mark.parametrize(
    "text",
    [
        "Entering Extended Passive Mode",
        "(|||0|)",
        "(|||65536|)",
        "(|||123456|)",
        "(|!|21|)",
        "(|||21!)",
        "(||21|)",
        "(   21 )",
        "(|||\u0662\u0661|)",
        "(|||-1|)",
    ],
)
def test_parse_epsv_reply_refuses(text):
    with pytest.raises(AddressError):
        parse_epsv_reply(text)


@settings(max_examples=200, deadline=None)
@given(port=ports)
def test_the_servers_229_reads_back(port):
    assert parse_epsv_reply(format_epsv(port)) == port


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789,|()!.x \u0661"), max_size=40))
def test_passive_reply_parsers_raise_only_address_error(text):
    with contextlib.suppress(AddressError):
        hp = parse_pasv_reply(text)
        ipaddress.IPv4Address(hp.host)
        assert 0 < hp.port <= 65535
    with contextlib.suppress(AddressError):
        assert 0 < parse_epsv_reply(text) <= 65535


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_passive_reply_parsers_on_arbitrary_text(text):
    with contextlib.suppress(AddressError):
        parse_pasv_reply(text)
    with contextlib.suppress(AddressError):
        parse_epsv_reply(text)


# --- PORT and EPRT, written ----------------------------------------------------------


def test_format_port():
    assert format_port("192.168.1.2", 1025) == "192,168,1,2,4,1"
    assert format_port("::ffff:10.0.0.1", 21) == "10,0,0,1,0,21"


@pytest.mark.parametrize(
    ("host", "port"), [("::1", 21), ("fe80::1%eth0", 21), ("name", 21), ("1.2.3.4", 0)]
)
def test_format_port_refuses(host, port):
    with pytest.raises(AddressError):
        format_port(host, port)


@pytest.mark.parametrize(
    ("host", "arg"),
    [
        ("1.2.3.4", "|1|1.2.3.4|21|"),
        ("::1", "|2|::1|21|"),
        ("2001:DB8:0::1", "|2|2001:db8::1|21|"),
        # Mapped goes as IPv4: a server on an IPv4 socket would refuse |2| (522).
        ("::ffff:127.0.0.1", "|1|127.0.0.1|21|"),
        # RFC 2428 has no zone syntax, and the server's zone names are not ours.
        ("fe80::1%eth0", "|2|fe80::1|21|"),
    ],
)
def test_format_eprt(host, arg):
    assert format_eprt(host, 21) == arg


@pytest.mark.parametrize(("host", "port"), [("name", 21), ("1.2.3.4", 65536), ("::1", 0)])
def test_format_eprt_refuses(host, port):
    with pytest.raises(AddressError):
        format_eprt(host, port)


@settings(max_examples=200, deadline=None)
@given(host=ipv4, port=ports)
def test_port_reads_back_on_the_server(host, port):
    assert parse_port(format_port(host, port)) == HostPort(host, port)


@settings(max_examples=200, deadline=None)
@given(host=st.one_of(ipv4, ipv6), port=ports)
def test_eprt_reads_back_on_the_server(host, port):
    hp = parse_eprt(format_eprt(host, port))
    assert hp.port == port
    assert same_address(hp.host, host)


# --- comparing socket addresses ---------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", ipaddress.IPv4Address("127.0.0.1")),
        ("::ffff:127.0.0.1", ipaddress.IPv4Address("127.0.0.1")),
        ("::1", ipaddress.IPv6Address("::1")),
        ("fe80::1%eth0", ipaddress.IPv6Address("fe80::1%eth0")),
        ("localhost", None),
        ("", None),
        ("1.2.3.4 ", None),
    ],
)
def test_parse_host(host, expected):
    assert parse_host(host) == expected


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("::ffff:127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "::FFFF:127.0.0.1", True),
        ("::1", "0:0:0:0:0:0:0:1", True),
        ("127.0.0.1", "127.0.0.2", False),
        ("::1", "127.0.0.1", False),
        ("fe80::1%eth0", "fe80::1%eth0", True),
        ("fe80::1%eth0", "fe80::1%eth1", False),
        ("fe80::1%eth0", "fe80::1", False),
        ("localhost", "localhost", False),
        ("", "", False),
    ],
)
def test_same_address(a, b, same):
    assert same_address(a, b) is same
    assert same_address(b, a) is same


@settings(max_examples=200, deadline=None)
@given(host=ipv4)
def test_mapped_and_plain_ipv4_are_one_host(host):
    assert same_address(f"::ffff:{host}", host)
    assert same_address(host, f"::ffff:{host}")
