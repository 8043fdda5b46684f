"""orsguard: run W3C SCXML state machines under the session limits of Genesys ORS 8.1.3.

import orsguard
doc = orsguard.load("strategy.scxml")
session = orsguard.Session(doc, limits=orsguard.Limits(max_microstep_count=100))
session.start()
session.send("call.arrived", {"ani": "5551234"})
print(session.configuration, session.final, session.termination)
"""

from orsguard._core import Event, Stats, default_stats
from orsguard._version import __version__
from orsguard.clock import AsyncioClock, RealClock, VirtualClock
from orsguard.document import Document, load, load_file, load_string
from orsguard.errors import CommunicationError, DocumentError, ExecutionError, OrsguardError
from orsguard.limits import OPTION_NAMES, Limits
from orsguard.session import LIMIT_EVENT, Session
from orsguard.termination import Termination

__all__ = [
    "__version__",
    "LIMIT_EVENT",
    "OPTION_NAMES",
    "AsyncioClock",
    "CommunicationError",
    "Document",
    "DocumentError",
    "Event",
    "ExecutionError",
    "Limits",
    "OrsguardError",
    "RealClock",
    "Session",
    "Stats",
    "Termination",
    "VirtualClock",
    "default_stats",
    "load",
    "load_file",
    "load_string",
]
