"""Event I/O processors: how ``<send>`` reaches targets outside the session's own queues.

The SCXML processor (sessions in this process) is built in; others register
through :class:`EventIOProcessor` instances passed to ``Session(ioprocessors=...)``.

Events from outside the process (BasicHTTP requests, MQTT messages) pass
:func:`check_external_event` before they are queued: names the platform
reserves are refused, and so is data that cannot enter a session safely
(docs/security.md).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol

from orsguard.runtime import IOSession

if TYPE_CHECKING:
    from orsguard._core import Event

SCXML_TYPE = "http://www.w3.org/TR/scxml/#SCXMLEventProcessor"
BASICHTTP_TYPE = "http://www.w3.org/TR/scxml/#BasicHTTPEventProcessor"

#: First name segments of the events only the platform raises (``error.*``, ``done.*``; spec 3.12.2, 6.5).
PLATFORM_EVENT_PREFIXES = ("error", "done")
#: Deepest nesting of lists and objects event data may have when it crosses a session boundary.
MAX_DATA_DEPTH = 64
#: Integers beyond this magnitude have no exact ECMAScript number.
MAX_SAFE_INTEGER = 2**53 - 1


class EventIOProcessor(Protocol):
    """An external event I/O processor.

    ``send`` raises :class:`orsguard.errors.CommunicationError` when the event
    cannot be delivered; the sending session then raises ``error.communication``.
    A processor delivers events it receives to a session with
    :meth:`~orsguard.runtime.IOSession.post`.
    """

    type_uri: str
    aliases: tuple[str, ...]

    def location(self, session: IOSession) -> str: ...

    def send(self, session: IOSession, event: Event, target: str) -> None: ...


def is_platform_event(name: str) -> bool:
    """Whether ``name`` is in a namespace only the platform may raise (``error``, ``done``)."""
    return name.split(".", 1)[0] in PLATFORM_EVENT_PREFIXES


def check_portable(data: Any, *, exact: bool = False) -> None:
    """Raise ValueError unless ``data`` can cross from one session (or the outside) into another.

    Event data is plain data: None, booleans, numbers, strings, lists and
    string-keyed dicts, nested at most :data:`MAX_DATA_DEPTH` deep (XML content
    is a string). Functions, symbols and other engine objects belong to the
    session that made them. With ``exact`` (data from outside the process, see
    :func:`check_external_event`) numbers must also be finite, integers within
    +-(2**53 - 1), the range an ECMAScript number holds exactly, and strings
    valid Unicode (no lone surrogates).
    """
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, str):
            if exact:
                _check_text(value)
        elif isinstance(value, int):
            if exact and abs(value) > MAX_SAFE_INTEGER:
                raise ValueError("an integer beyond +-(2**53 - 1) has no exact ECMAScript number")
        elif isinstance(value, float):
            if exact and not math.isfinite(value):
                raise ValueError(f"{value!r} is not a finite number")
        elif isinstance(value, (list, tuple, dict)):
            if depth >= MAX_DATA_DEPTH:
                raise ValueError(f"the data is nested more than {MAX_DATA_DEPTH} deep")
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise ValueError(f"an object key must be a string, not {type(key).__name__}")
                    if exact:
                        _check_text(key)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)
        else:
            raise ValueError(f"a {type(value).__name__} value cannot leave its session")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone surrogate") from None


def check_external_event(name: str, data: Any, *, allow_platform: bool = False) -> None:
    """Raise ValueError when an event from outside the process may not be queued.

    The policy for BasicHTTP requests and the host's MQTT events: a name in a
    platform namespace (:func:`is_platform_event`) is refused unless
    ``allow_platform``, because a session must be able to trust that
    ``error.*`` and ``done.*`` come from its own platform; the data must pass
    :func:`check_portable` with ``exact=True``.
    """
    if not allow_platform and is_platform_event(name):
        raise ValueError(f"{name!r}: events named error.* and done.* are raised by the platform only")
    check_portable(data, exact=True)
