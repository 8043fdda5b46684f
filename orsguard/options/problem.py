"""One finding about an option file, with its place: what the reader and the checks report."""

from __future__ import annotations

from dataclasses import dataclass

from orsguard.errors import OptionsError

ERROR = "error"
WARNING = "warning"
NOTE = "note"


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
