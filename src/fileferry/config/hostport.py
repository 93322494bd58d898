"""``ADDR:PORT`` values (``127.0.0.1:8021``, ``[::1]:8021``): ``--admin`` and ``--metrics``.

One parser for every listener an operator places by address, so both
options accept and refuse the same things with the same words:

* only literal IP addresses: a name would be resolved at start, and a
  listener that opens somewhere other than where the operator looked (an
  exporter or an admin on ``0.0.0.0`` by accident) is the surprise to avoid;
* IPv6 in brackets, ``[::1]:8021``. A bare ``::1:8021`` is refused, not
  guessed: it is itself a valid IPv6 address (``::1:8021`` with no port),
  so either reading would be a guess;
* a port from 0 (any free one) to 65535.

``--metrics`` keeps the parsed ``(host, port)``; ``--admin`` keeps the
normalised text (:func:`parse_host_port`), which :func:`split_host_port`
splits again.
"""

from __future__ import annotations

import ipaddress

from fileferry.errors import ConfigError


def parse_listen_address(value: object, key: str) -> tuple[str, int]:
    """``ADDR:PORT`` or ``[IPv6]:PORT`` as ``(host, port)``; also a TOML ``[host, port]`` pair."""
    bracketed = True  # a pair leaves nothing ambiguous
    if isinstance(value, (list, tuple)) and len(value) == 2:
        host, port_text = str(value[0]).strip(), str(value[1]).strip()
    else:
        text = str(value).strip()
        if text.startswith("["):
            host, close, rest = text[1:].partition("]")
            port_text = rest[1:]
            ok = bool(close) and rest.startswith(":")
        else:
            host, sep, port_text = text.rpartition(":")
            ok, bracketed = bool(sep), False
        if not ok or not host:
            raise ConfigError(f"{key}: expected ADDR:PORT such as 127.0.0.1:8021, got {value!r}")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"{key}: {host!r} is not an IP address (write IPv6 as [::1]:8021)"
        ) from None
    if address.version == 6 and not bracketed:
        raise ConfigError(f"{key}: write an IPv6 address in brackets, as [{host}]:{port_text}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{key}: port {port_text!r} is not a number from 0 to 65535")
    return str(address), int(port_text)


def format_host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_host_port(value: object, key: str) -> str:
    """:func:`parse_listen_address`, kept as normalised text (``--admin``'s setting)."""
    return format_host_port(*parse_listen_address(value, key))


def split_host_port(text: str) -> tuple[str, int]:
    """(host, port) of a value :func:`parse_host_port` accepted."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)
