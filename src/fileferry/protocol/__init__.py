"""The sans-I/O FTP protocol core: no sockets, no clocks, no files.

It imports nothing of fileferry but :mod:`fileferry.paths`, so it can be
tested and fuzzed without an event loop.
"""

from fileferry.protocol.commands import CoreConfig
from fileferry.protocol.events import NEED_DATA
from fileferry.protocol.replies import Reply
from fileferry.protocol.session import Session

__all__ = ["NEED_DATA", "CoreConfig", "Reply", "Session"]
