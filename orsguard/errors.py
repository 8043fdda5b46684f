"""The root of orsguard's exceptions, and the errors more than one module raises or handles.

Every exception orsguard raises to its user derives from :class:`OrsguardError`.
An error that belongs to one module's work is defined beside that work and
derives from it there: ``replay.ReplayError``, ``diagram.DiagramError``,
``scenario.ScenarioError``, ``records.StrictError`` and
``ioprocessors.mqtt_protocol.MqttError``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orsguard.options.problem import Problem


class OrsguardError(Exception):
    """Base class of orsguard's own errors."""


class DocumentError(OrsguardError):
    """An SCXML document that cannot be loaded: where, and what to do about it.

    ``file`` is the path (None for text), ``line`` and ``column`` 1-based
    (None when unknown), ``message`` the reason without the location.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 column: int | None = None, element: str | None = None) -> None:
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


class OptionsError(OrsguardError):
    """An ORS option file (or an environment override) that cannot be used, with its location.

    ``str()`` gives ``SOURCE:LINE: section/option: message``, the parts that are
    unknown left out. ``problems`` lists every syntax error found when one read
    found several; the exception itself describes the first.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        line: int | None,
        message: str,
        *,
        section: str | None = None,
        option: str | None = None,
        problems: Sequence[Problem] = (),
    ) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.message = message
        self.section = section
        self.option = option
        self.problems = list(problems)
        super().__init__(self.locate(self.path, line, section, option, message))

    @staticmethod
    def locate(path: str, line: int | None, section: str | None, option: str | None, message: str) -> str:
        """``message`` behind its place, as every message about an option file is written."""
        where = path if line is None else f"{path}:{line}"
        if section is not None and option is not None:
            return f"{where}: {section}/{option}: {message}"
        if section is not None:
            return f"{where}: [{section}]: {message}"
        return f"{where}: {message}"
