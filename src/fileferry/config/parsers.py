"""Parsers of the observability settings whose values are more than a plain type.

``--metrics ADDR:PORT`` must bind exactly where the operator said (an
exporter on ``0.0.0.0`` by accident shows user names to the world): it is
parsed by :func:`fileferry.config.hostport.parse_listen_address`, the one
parser of every listener's address (``--admin``'s too). ``--node-name`` ends up in
every JSON log line and in state shared between nodes, so it is kept to the
characters of a host name: no spaces, quotes or control characters to
escape or to confuse a parser.
"""

from __future__ import annotations

import re

from fileferry.config.hostport import parse_listen_address
from fileferry.errors import ConfigError

__all__ = ["parse_listen_address", "parse_node_name"]

_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def parse_node_name(value: object, key: str) -> str:
    """A host-name-like label of 1 to 63 characters."""
    text = str(value)
    if not _NODE.fullmatch(text):
        raise ConfigError(
            f"{key}: expected 1 to 63 letters, digits, '.', '_' or '-' "
            f"(starting with a letter or digit), got {value!r}"
        )
    return text
