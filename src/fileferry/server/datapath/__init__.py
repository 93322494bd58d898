"""The data plane of a transfer: choosing a route (``choose``) and running it (``run``).

Handlers hand a reader or upload, the storage's capabilities and the
session's throttle to :class:`DataPaths`; which of ``sendfile``, ``splice``,
a TLS pump thread or the loop moves the bytes is decided in ``choose`` and
nowhere else.
"""

from fileferry.server.datapath.choose import Download, Receive
from fileferry.server.datapath.run import DataPaths

__all__ = ["DataPaths", "Download", "Receive"]
