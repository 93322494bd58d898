"""Parsers of the observability settings whose values are more than a plain type.

``--metrics ADDR:PORT`` must bind exactly where the operator said (an
exporter on ``0.0.0.0`` by accident shows user names to the world), so the
address is required and must be an IP address. ``--node-name`` ends up in
every JSON log line and in state shared between nodes, so it is kept to the
characters of a host name: no spaces, quotes or control characters to
escape or to confuse a parser.
"""

from __future__ import annotations

import ipaddress
import re

from fileferry.errors import ConfigError

_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def parse_listen_address(value: object, key: str) -> tuple[str, int]:
    """``ADDR:PORT`` or ``[IPv6]:PORT`` (port 0: any free one) as ``(host, port)``."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        host, port_text = str(value[0]), str(value[1])
    else:
        text = str(value).strip()
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
            sep = sep and rest[:1]
        else:
            host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ConfigError(f"{key}: expected ADDR:PORT (e.g. 127.0.0.1:9101), got {value!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{key}: {host!r} is not an IP address") from None
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"{key}: expected ADDR:PORT, got {value!r}") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key}: port must be 0 to 65535, got {port}")
    return host, port


def parse_node_name(value: object, key: str) -> str:
    """A host-name-like label of 1 to 63 characters."""
    text = str(value)
    if not _NODE.fullmatch(text):
        raise ConfigError(
            f"{key}: expected 1 to 63 letters, digits, '.', '_' or '-' "
            f"(starting with a letter or digit), got {value!r}"
        )
    return text
