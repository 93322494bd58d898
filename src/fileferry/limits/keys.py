"""Who a limit counts: the unit an attacker controls, not the address it shows.

One IPv4 address, or one IPv6 /64 (a single host is routinely handed a
whole /64, so counting its addresses one by one would multiply every cap).
"""

from __future__ import annotations

import functools
import ipaddress


@functools.lru_cache(maxsize=4096)
def client_key(host: str) -> str:
    """The unit of accounting for an address: itself for IPv4, its /64 for IPv6.

    Cached (a pure function of the text): a burst of logins from one address
    parses it once instead of once per connection.
    """
    host = host.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)
