"""Event I/O processors: how ``<send>`` reaches targets outside the session's own queues.

The SCXML processor (sessions in this process) is built in; others register
through :class:`EventIOProcessor` instances passed to ``Session(ioprocessors=...)``.
"""

from __future__ import annotations

from typing import Any, Protocol

SCXML_TYPE = "http://www.w3.org/TR/scxml/#SCXMLEventProcessor"
BASICHTTP_TYPE = "http://www.w3.org/TR/scxml/#BasicHTTPEventProcessor"


class EventIOProcessor(Protocol):
    """An external event I/O processor.

    ``send`` raises :class:`orsguard.CommunicationError` when the event cannot be
    delivered; the sending session then raises ``error.communication``.
    """

    type_uri: str
    aliases: tuple[str, ...]

    def location(self, session: Any) -> str: ...

    def send(self, session: Any, event: Any, target: str) -> None: ...
