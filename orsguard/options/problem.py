"""What is wrong with an option file, and where: the error that stops a read, and the findings of a check."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from orsguard.errors import OrsguardError

ERROR = "error"
WARNING = "warning"
NOTE = "note"


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


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of :func:`~orsguard.options.check`; ``severity`` is ``error``, ``warning`` or ``note``."""

    file: str
    line: int
    section: str | None
    option: str | None
    severity: str
    message: str

    def __str__(self) -> str:
        return OptionsError.locate(self.file, self.line, self.section, self.option, f"{self.severity}: {self.message}")
