"""What a session shows a test: sends that left it, error events, transitions taken, its variables."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from orsguard.errors import OrsguardError

#: How many error events one session tree keeps in ``Session.errors``; later ones are counted only.
MAX_ERRORS = 100


@dataclass(frozen=True)
class Sent:
    """One ``<send>`` that left the session (to an event I/O processor other than the SCXML one).

    ``delay`` is the delay it was sent with (seconds); it is recorded when it
    leaves, at clock time ``time``, so a delayed send cancelled before then is
    never recorded. ``invokeid`` names the invoked session it came from (None:
    the session itself).
    """

    event: str | None
    target: str | None
    type: str | None
    data: Any
    delay: float
    sendid: str
    invokeid: str | None = None
    time: float = 0.0


@dataclass(frozen=True)
class ErrorRecord:
    """An ``error.*`` event the platform raised in a session.

    ``tagname``, ``line`` and ``column`` locate the element that failed (None
    when unknown), ``reason`` says why; ``transition`` is the label of the
    transition whose ``cond`` failed, if that was it; ``invokeid`` the invoked
    session it happened in (None: the session itself).
    """

    event: str
    reason: str
    tagname: str | None = None
    line: int | None = None
    column: int | None = None
    file: str | None = None
    transition: str | None = None
    invokeid: str | None = None

    def as_data(self) -> dict[str, Any]:
        """The event's ``_event.data``; ``message`` repeats ``reason`` under its older name."""
        return {
            "message": self.reason,
            "reason": self.reason,
            "tagname": self.tagname,
            "line": self.line,
            "column": self.column,
        }

    def __str__(self) -> str:
        where = _shown(self.file) if self.file else "<string>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        element = f" <{self.tagname}>" if self.tagname else ""
        cond = f" (cond of {self.transition})" if self.transition else ""
        child = f" in invoked session {self.invokeid!r}" if self.invokeid else ""
        return f"{self.event} at {where}{element}{cond}{child}: {self.reason}"


def _shown(path: str) -> str:
    """A path as short as it can be told: relative to the working directory when inside it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


class StrictError(AssertionError, OrsguardError):
    """A strict session raised error events nobody expected, or an expected one never came.

    Also an AssertionError, so that pytest reports it as a failed check rather than a crash.
    """


class ExpectedError:
    """One ``session.expect_error(...)``: an event descriptor and an optional regular expression on the reason."""

    def __init__(self, event: str, match: str | None) -> None:
        self.event = event
        self.match = match
        prefix = event[:-2] if event.endswith(".*") else event.rstrip(".")
        self._prefix = prefix
        self._regex = re.compile(match) if match is not None else None

    def matches(self, record: ErrorRecord) -> bool:
        name = record.event
        if self._prefix not in ("*", "") and name != self._prefix and not name.startswith(self._prefix + "."):
            return False
        return self._regex is None or self._regex.search(record.reason) is not None

    def __str__(self) -> str:
        return self.event + (f" matching {self.match!r}" if self.match is not None else "")


class TransitionTaken(str):
    """What ``on_transition`` receives: the transition's label (``"a -> b"``) with details.

    ``index`` is the transition's number in the document, ``event`` the name of
    the event that selected it (None: eventless or initial), ``invokeid`` the
    invoked session it was taken in (None: the session itself).
    """

    # The public name deliberately shadows str.index on these label strings.
    index: int  # type: ignore[assignment]
    event: str | None
    invokeid: str | None

    def __new__(cls, label: str, index: int, event: str | None, invokeid: str | None) -> TransitionTaken:
        self = super().__new__(cls, label)
        self.index = index
        self.event = event
        self.invokeid = invokeid
        return self

    @property
    def label(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        extra = f" on {self.event}" if self.event else ""
        extra += f" in {self.invokeid}" if self.invokeid else ""
        return f"<TransitionTaken {self.label!r}{extra}>"


class DataView(Mapping[str, Any]):
    """A read-only, live view of a session's ``<data>`` variables as Python values."""

    def __init__(self, names: list[str], read: Callable[[str], Any]) -> None:
        self._names = names
        self._read = read

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        return self._read(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __repr__(self) -> str:
        return f"DataView({dict(self)!r})"


def element_column(lines: list[str] | None, line: int | None, tagname: str | None) -> tuple[int | None, int | None]:
    """The line and 1-based column where the element's start tag begins.

    The parser reports the line where a start tag ends; a tag spread over
    several lines begins on an earlier one. With two such tags on one line
    the first is taken.
    """
    if lines is None or line is None or not tagname:
        return line, None
    needle = re.compile(r"<(?:[\w.-]+:)?" + re.escape(tagname) + r"(?=[\s/>])")
    for n in range(min(line, len(lines)), max(line - 50, 0), -1):
        found = list(needle.finditer(lines[n - 1]))
        if found:
            m = found[0] if n == line else found[-1]
            return n, m.start() + 1
    return line, None
