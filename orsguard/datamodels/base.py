"""The datamodel protocol the step loop and executable content rely on."""

from __future__ import annotations

from typing import Any, NamedTuple


class XmlContent(str):
    """Inline XML given as data (``<data>``/``<content>`` children, or a ``src`` file).

    A ``str`` holding the serialized XML, so a datamodel without a DOM sees text;
    the ECMAScript datamodel turns it into a small DOM (getElementsByTagName,
    getAttribute, childNodes, textContent).
    """


def expression_text(text: str) -> str:
    """An expression without the statement terminator authors sometimes add (``new f();``)."""
    stripped = text.strip()
    while stripped.endswith(";"):
        stripped = stripped[:-1].rstrip()
    return stripped


class Expression(NamedTuple):
    """One expression of a document.

    ``kind`` is ``cond`` (boolean), ``value``, ``assign`` (``location`` = ``text``),
    ``setter`` (assign a host value to ``location``), ``script`` (statements at
    global scope) or ``foreach`` (``text`` = array, ``extra`` = item, index).
    """

    kind: str
    text: str
    line: int | None
    location: str | None
    extra: tuple[str, ...]


class Datamodel:
    """Base class: one instance per session.

    Methods raise ``orsguard.errors.ExecutionError`` for a failed evaluation,
    which the session turns into ``error.execution``.
    """

    name = ""

    def __init__(self, session: Any, expressions: list[Expression]) -> None:
        self.session = session
        self.expressions = expressions

    def set_time_limit(self, seconds: float) -> None:
        """``process-event-timeout`` in seconds (0 = off): how long a script may run."""

    def setup(self, system: dict[str, Any], data_ids: list[str]) -> None:
        """Bind the system variables and declare every ``<data>`` id (unbound)."""

    def bind_event(self, event: Any) -> None:
        """Make ``event`` the value of ``_event``."""

    def cond(self, k: int) -> bool:
        raise NotImplementedError

    def value(self, k: int) -> Any:
        raise NotImplementedError

    def assign(self, k: int) -> None:
        raise NotImplementedError

    def set_location(self, k: int, value: Any) -> None:
        raise NotImplementedError

    def script(self, k: int) -> None:
        raise NotImplementedError

    def foreach(self, k: int, body: Any) -> None:
        raise NotImplementedError

    def is_valid_location(self, location: str) -> bool:
        return False
