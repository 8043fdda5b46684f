"""The datamodel protocol the step loop and executable content rely on."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable

    from orsguard._core import Event
    from orsguard.runtime import DatamodelHost


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
    which the session turns into ``error.execution``, and
    ``orsguard._core.ScriptInterrupted`` when the engine stopped a script at
    the deadline or on :meth:`terminate`.
    """

    name = ""
    #: False when no expression of the document can read ``_event``: the core
    #: then skips :meth:`bind_event` (read once, when the session starts).
    reads_event = True
    #: Whether JSON text in an inline ``<content>`` becomes a structured value
    #: (False: it stays a normalized string).
    json_content = True

    def __init__(self, session: DatamodelHost, expressions: list[Expression]) -> None:
        # Weak: the session owns its datamodel, and a cycle would keep the
        # engine's context alive until Python's cycle collector runs.
        self._session = weakref.ref(session)
        self.expressions = expressions

    @property
    def session(self) -> DatamodelHost | None:
        """The session this datamodel belongs to (None once it is gone)."""
        return self._session()

    @classmethod
    def check(
        cls, kind: str, text: str, location: str | None = None, extra: tuple[str, ...] = (), *, defer: bool = False
    ) -> str | None:
        """What is wrong with one expression of a document, as a load error message; None when nothing is.

        Runs nothing. ``kind`` as in :class:`Expression`, or ``data`` for a
        ``<data>`` element (``text`` is its id). With ``defer`` (a document
        loaded with ``check_expressions=False``) a datamodel may leave to run
        time, as ``error.execution``, what it will report there; what it can
        never evaluate it rejects anyway.
        """
        return None

    @classmethod
    def validate(cls, value: Any) -> None:
        """Raise ValueError unless ``value`` can enter this datamodel (event data, initial data)."""

    def deadline_address(self) -> int:
        """Address of the C double (CLOCK_MONOTONIC seconds, 0 = none) scripts run against; 0 = no engine."""
        return 0

    def terminate(self) -> None:
        """Stop the script running now, or the next one, with ScriptInterrupted. Any thread."""

    def close(self) -> None:
        """Free the engine's resources now; idempotent. Later calls raise ExecutionError."""

    def setup(self, system: dict[str, Any], data_ids: list[str]) -> None:
        """Bind the system variables and declare every ``<data>`` id (unbound)."""

    def bind_event(self, event: Event) -> None:
        """Make ``event`` the value of ``_event``."""

    def cond(self, k: int) -> bool:
        raise NotImplementedError

    def value(self, k: int) -> Any:
        raise NotImplementedError

    def values(self, ks: tuple[int, ...]) -> list[Any]:
        """:meth:`value` of each expression in ``ks``, in order; an exception carries ``index``,
        the position in ``ks`` that raised it."""
        out = []
        for i, k in enumerate(ks):
            try:
                out.append(self.value(k))
            except Exception as exc:
                try:
                    exc.index = i  # type: ignore[attr-defined]
                except AttributeError:
                    pass
                raise
        return out

    def assign(self, k: int) -> None:
        raise NotImplementedError

    def set_location(self, k: int, value: Any) -> None:
        raise NotImplementedError

    def script(self, k: int) -> None:
        raise NotImplementedError

    def foreach(self, k: int, body: Callable[[], None]) -> None:
        """Run ``body`` once per item of the array of expression ``k``, its item (and index) bound."""
        raise NotImplementedError
