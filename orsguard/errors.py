"""The root of orsguard's exceptions, and the errors of loading and running a document.

Every exception orsguard raises to its user derives from :class:`OrsguardError`.
Here are the root and the errors the runtime shares across its modules: a
document that cannot be loaded, and the failures of executable content and of
I/O processors that a session turns into ``error.*`` events. An error that
belongs to one tool or transport is defined beside the code that raises it:
``options.OptionsError``, ``replay.ReplayError``, ``diagram.DiagramError``,
``scenario.ScenarioError``, ``records.StrictError`` and
``ioprocessors.mqtt_protocol.MqttError``.
"""

from __future__ import annotations


class OrsguardError(Exception):
    """Base class of orsguard's own errors."""


class DocumentError(OrsguardError):
    """An SCXML document that cannot be loaded: where, and what to do about it.

    ``file`` is the path (None for text), ``line`` and ``column`` 1-based
    (None when unknown), ``message`` the reason without the location.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        element: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.element = element
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file or "<string>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        element = f" <{self.element}>" if self.element and not self.message.startswith("<") else ""
        return f"{where}:{element} {self.message}"


class CommunicationError(OrsguardError):
    """An event I/O processor could not deliver an event (the session raises error.communication).

    ``sendid`` is the id of the failed ``<send>``, copied into the error event.
    """

    sendid: str | None = None


class ExecutionError(OrsguardError):
    """Executable content failed at run time (the session raises error.execution).

    ``sendid`` is set when the failure belongs to a ``<send>`` with an id.
    """

    sendid: str | None = None
