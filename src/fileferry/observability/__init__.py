"""What happened in the server's sessions, as typed events, for whoever watches.

Handlers describe outcomes (a login, a finished transfer, a deleted file)
as frozen dataclasses from :mod:`.events`; the :class:`.dispatch.Dispatcher`
hands them to the observers the server was built with, after the event
loop's turn. The session log (:class:`.sessionlog.SessionLog`) is one such
observer; metrics, xferlog or event hooks are others, added without editing
any handler.
"""

from fileferry.observability.dispatch import Dispatcher, Observer
from fileferry.observability.events import Origin, SessionEvent
from fileferry.observability.sessionlog import SessionLog

__all__ = ["Dispatcher", "Observer", "Origin", "SessionEvent", "SessionLog"]
