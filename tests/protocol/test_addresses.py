"""PORT, EPRT, PASV and EPSV arguments: parsing, formatting, address comparison."""

from __future__ import annotations

import contextlib
import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fileferry.protocol.addresses import (
    AddressError,
    HostPort,
    format_epsv,
    format_pasv,
    parse_eprt,
    parse_epsv,
    parse_port,
    same_host,
    unmap,
)

# --- PORT -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("192,168,1,2,4,1", HostPort("192.168.1.2", 1025)),
        ("127,0,0,1,0,21", HostPort("127.0.0.1", 21)),
        ("0,0,0,0,0,0", HostPort("0.0.0.0", 0)),
        ("255,255,255,255,255,255", HostPort("255.255.255.255", 65535)),
        (" 10,0,0,1,200,10 ", HostPort("10.0.0.1", 51210)),
        ("010,001,0,1,0,21", HostPort("10.1.0.1", 21)),
    ],
)
def test_parse_port(arg, expected):
    assert parse_port(arg) == expected


@pytest.mark.parametrize(
    "arg",
    [
        "",
        " ",
        "1,2,3,4,5",
        "1,2,3,4,5,6,7",
        "a,b,c,d,e,f",
        "256,1,1,1,1,1",
        "1,1,1,1,1,256",
        "-1,1,1,1,1,1",
        "+1,1,1,1,1,1",
        "1_0,1,1,1,1,1",
        "0x1,1,1,1,1,1",
        "1,,3,4,5,6",
        "1.2.3.4,5,6",
        "1;2;3;4;5;6",
        "1,2,3,4,5,6,",
        "1e1,2,3,4,5,6",
        "1,2,3,4,5,²",
        "1" * 5000 + ",1,1,1,1,1",
    ],
)
def test_parse_port_rejects(arg):
    with pytest.raises(AddressError) as info:
        parse_port(arg)
    assert info.value.reply_code == 501


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_port_raises_only_address_error(arg):
    try:
        hp = parse_port(arg)
    except AddressError as exc:
        assert exc.reply_code == 501
    else:
        ipaddress.IPv4Address(hp.host)
        assert 0 <= hp.port <= 65535


port_field = st.one_of(
    st.integers(-5, 300).map(str),
    st.sampled_from(["", " ", "1 ", " 2", "x", "²", "\u0663", "+1", "-0", "1.0", "00", "0" * 30]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(port_field, min_size=4, max_size=8).map(",".join))
def test_parse_port_near_misses_raise_only_address_error(arg):
    try:
        hp = parse_port(arg)
    except AddressError:
        return
    ipaddress.IPv4Address(hp.host)
    assert 0 <= hp.port <= 65535


ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ports = st.integers(0, 65535)


@settings(max_examples=200, deadline=None)
@given(host=ipv4, port=ports)
def test_format_pasv_round_trips_through_parse_port(host, port):
    text = format_pasv(host, port)
    # What ftplib's parse227 looks for: six numbers in the first parentheses.
    m = re.search(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", text)
    assert m is not None
    assert text.startswith("Entering Passive Mode (")
    inner = text[text.index("(") + 1 : text.index(")")]
    assert parse_port(inner) == HostPort(host, port)


def test_format_pasv_text():
    assert format_pasv("10.0.0.1", 51210) == "Entering Passive Mode (10,0,0,1,200,10)."


# --- EPRT -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("|1|132.235.1.2|6275|", HostPort("132.235.1.2", 6275)),
        ("|2|1080::8:800:200C:417A|5282|", HostPort("1080::8:800:200c:417a", 5282)),
        ("|2|::1|21|", HostPort("::1", 21)),
        ("|2|::ffff:10.0.0.1|1025|", HostPort(str(ipaddress.ip_address("::ffff:10.0.0.1")), 1025)),
        ("!1!10.0.0.1!65535!", HostPort("10.0.0.1", 65535)),
        ("~2~fe80::1~1~", HostPort("fe80::1", 1)),
    ],
)
def test_parse_eprt(arg, expected):
    assert parse_eprt(arg) == expected


@pytest.mark.parametrize("proto", ["3", "0", "x", "", "12"])
def test_parse_eprt_unknown_protocol_is_522(proto):
    with pytest.raises(AddressError) as info:
        parse_eprt(f"|{proto}|1.2.3.4|21|")
    assert info.value.reply_code == 522


@pytest.mark.parametrize(
    "arg",
    [
        "",
        "|1|",
        "|1|1.2.3.4|21",  # no closing delimiter
        "|1|1.2.3.4|21|x|",  # extra field
        "x|1|1.2.3.4|21|",  # text before the first delimiter
        "|1|::1|21|",  # IPv6 address under protocol 1
        "|2|1.2.3.4|21|",  # IPv4 address under protocol 2
        "|1|1.2.3|21|",
        "|1|host.example|21|",
        "|1|1.2.3.4|0|",
        "|1|1.2.3.4|65536|",
        "|1|1.2.3.4|-1|",
        "|1|1.2.3.4|+21|",
        "|1|1.2.3.4||",
        "|1|1.2.3.4|x|",
        "|1|1.2.3.4|²|",
        "|1|1.2.3.4|" + "9" * 5000 + "|",
        "a1a1.2.3.4a21a",  # alphanumeric delimiter
        "11111.2.3.41211",
        " 1 1.2.3.4 21 ",  # space is not a printable delimiter
        "\x7f1\x7f1.2.3.4\x7f21\x7f",
        "é1é1.2.3.4é21é",
    ],
)
def test_parse_eprt_rejects(arg):
    with pytest.raises(AddressError) as info:
        parse_eprt(arg)
    assert info.value.reply_code == 501


eprt_field = st.one_of(
    st.sampled_from(["1", "2", "3", "", "1.2.3.4", "::1", "21", "0", "65536", "²", "\u0663\u0664"]),
    st.text(alphabet="0123456789.:abcdef|%²\u0663", max_size=12),
)


eprt_fields = st.one_of(
    st.tuples(
        st.sampled_from(["1", "2", "3", "", "\u0661"]),
        st.sampled_from(["1.2.3.4", "::1", "::ffff:1.2.3.4", "fe80::1%2", "1.2.3", "", "x"]),
        eprt_field,
    ).map(list),
    st.lists(eprt_field, min_size=0, max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(delim=st.sampled_from(["|", "!", "a", " ", "é"]), fields=eprt_fields)
def test_parse_eprt_raises_only_address_error(delim, fields):
    arg = delim + delim.join(fields) + delim
    try:
        hp = parse_eprt(arg)
    except AddressError as exc:
        assert exc.reply_code in (501, 522)
    else:
        ipaddress.ip_address(hp.host.split("%")[0])
        assert 0 < hp.port <= 65535


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_eprt_arbitrary_text(arg):
    with contextlib.suppress(AddressError):
        parse_eprt(arg)


# --- EPSV -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "expected"),
    [("", None), ("  ", None), ("1", 1), ("2", 2), (" 2 ", 2), ("ALL", "ALL"), ("all", "ALL")],
)
def test_parse_epsv(arg, expected):
    assert parse_epsv(arg) == expected


@pytest.mark.parametrize("arg", ["3", "0", "x", "ALLX", "1 2", "²"])
def test_parse_epsv_unknown_is_522(arg):
    with pytest.raises(AddressError) as info:
        parse_epsv(arg)
    assert info.value.reply_code == 522


def test_format_epsv():
    assert format_epsv(5282) == "Entering Extended Passive Mode (|||5282|)"


@settings(max_examples=100, deadline=None)
@given(ports)
def test_format_epsv_parses_like_clients_do(port):
    # ftplib's parse229: the text between the parentheses, split on its first char.
    text = format_epsv(port)
    inner = text[text.index("(") + 1 : text.index(")")]
    parts = inner.split(inner[0])
    assert len(parts) == 5
    assert int(parts[3]) == port


# --- unmap / same_host ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("::FFFF:10.0.0.1", "10.0.0.1"),
        ("1.2.3.4", "1.2.3.4"),
        ("::1", "::1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("2001:db8:0:0:0:0:0:1", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("::ffff:1.2.3.4%3", "1.2.3.4"),
        ("not-an-ip", "not-an-ip"),
        ("", ""),
    ],
)
def test_unmap(host, expected):
    assert unmap(host) == expected


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("::ffff:10.0.0.1", "10.0.0.1", True),
        ("10.0.0.1", "::ffff:10.0.0.1", True),
        ("10.0.0.1", "10.0.0.1", True),
        ("10.0.0.1", "10.0.0.2", False),
        ("::1", "0:0:0:0:0:0:0:1", True),
        ("::1", "127.0.0.1", False),
        ("fe80::1%eth0", "fe80::1", True),
        ("2001:db8::1", "2001:DB8::1", True),
    ],
)
def test_same_host(a, b, same):
    assert same_host(a, b) is same


@settings(max_examples=100, deadline=None)
@given(ipv4)
def test_mapped_v4_is_same_host(host):
    assert same_host(f"::ffff:{host}", host)
    assert unmap(f"::ffff:{host}") == host
