"""The SCXML Event I/O Processor (spec C.1): events between sessions of this process.

Targets: none (the session's own external queue), ``#_internal``, ``#_parent``,
``#_<invokeid>`` (also spelled ``#_invoke_<invokeid>``), ``#_scxml_<sessionid>``. Delivery to another session
goes through its ``post``: processed on the next turn of its clock rather than inside the sender's
macrostep, so sessions never nest inside each other's step loops.
"""

from __future__ import annotations

import weakref

from orsguard._core import Event
from orsguard.errors import CommunicationError, ExecutionError
from orsguard.ioprocessors import SCXML_TYPE, check_portable
from orsguard.runtime import IOSession

ALIASES = (SCXML_TYPE, "scxml", "http://www.w3.org/TR/scxml/")

#: Live sessions by id, for ``#_scxml_<sessionid>`` targets.
registry: weakref.WeakValueDictionary[str, IOSession] = weakref.WeakValueDictionary()


def location(session: IOSession) -> str:
    """The ``_ioprocessors`` location of ``session`` under the SCXML processor."""
    return "#_scxml_" + session.session_id


def post_portable(target: IOSession, event: Event) -> None:
    """Post an event one session sends to another; CommunicationError when its data cannot cross."""
    try:
        check_portable(event.data)
    except ValueError as exc:
        raise CommunicationError(f"the event data cannot be sent to another session: {exc}") from None
    target.post(event)


def deliver(session: IOSession, event: Event, target: str | None) -> None:
    """Route an event sent by ``session`` with the SCXML processor."""
    if target is None or target == "":
        # The session's own caller (start, send or a timer) processes its external queue.
        session.enqueue_external(event)
        return
    if target == "#_internal":
        event.type = "internal"
        session.enqueue_internal(event)
        return
    if target == "#_parent":
        parent = session.parent
        if parent is None:
            raise CommunicationError("#_parent: this session was not invoked")
        event.invokeid = session.invoke_id
        post_portable(parent, event)
        return
    if target.startswith("#_scxml_"):
        other = registry.get(target[len("#_scxml_") :])
        if other is None or not other.running:
            raise CommunicationError(f"{target}: no such session")
        post_portable(other, event)
        return
    if target.startswith("#_"):
        # The spec's form is #_<invokeid>; #_invoke_<invokeid> is accepted as a spelled-out alias.
        invoke_id = target[2:]
        child = session.child(invoke_id)
        if child is None and invoke_id.startswith("invoke_"):
            child = session.child(invoke_id[len("invoke_") :])
        if child is None:
            raise CommunicationError(f"{target}: no such invoked session")
        post_portable(child, event)
        return
    raise ExecutionError(f"the SCXML event processor does not support target {target!r}")
