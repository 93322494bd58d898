"""``ADDR:PORT`` values (``127.0.0.1:8021``, ``[::1]:8021``), such as ``--admin``'s."""

from __future__ import annotations

import ipaddress

from fileferry.errors import ConfigError


def split_host_port(text: str) -> tuple[str, int]:
    """(host, port) of a value :func:`parse_host_port` accepted."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def parse_host_port(value: object, key: str) -> str:
    """``ADDR:PORT`` with a literal address (IPv6 in brackets) and a port 0-65535.

    Only literal addresses: a name would be resolved at start, and a web
    admin that listens somewhere other than where the operator looked is
    exactly the surprise to avoid.
    """
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{key}: expected ADDR:PORT such as 127.0.0.1:8021, got {value!r}")
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        raise ConfigError(
            f"{key}: {host!r} is not an IP address (write IPv6 as [::1]:8021)"
        ) from None
    if address.version == 6 and not bracketed:
        raise ConfigError(f"{key}: write an IPv6 address in brackets, as [{host}]:{port}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{key}: port {port!r} is not a number from 0 to 65535")
    return f"[{address}]:{int(port)}" if address.version == 6 else f"{address}:{int(port)}"
