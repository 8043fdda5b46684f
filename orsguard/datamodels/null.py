"""The ``null`` datamodel: no variables; conditions may only be ``In('state')``.

String literals are accepted as values (for ``<log expr="'text'"/>``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from orsguard.datamodels.base import Datamodel, Expression
from orsguard.errors import ExecutionError
from orsguard.runtime import DatamodelHost

_IN = re.compile(r"""^\s*In\(\s*(?:'([^']*)'|"([^"]*)")\s*\)\s*$""")
_LITERAL = re.compile(r"""^\s*(?:'([^']*)'|"([^"]*)")\s*$""")


def _parse_literal(text: str) -> str | None:
    """The value of a quoted string literal (allowed in ``<log>``), or None."""
    m = _LITERAL.match(text)
    if m is None:
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


def _parse_in(text: str) -> str | None:
    """The state id of an ``In('id')`` condition, or None when ``text`` is something else."""
    m = _IN.match(text)
    if m is None:
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


class NullDatamodel(Datamodel):
    """Spec section B.1: the only expression is the ``In()`` predicate."""

    name = "null"
    reads_event = False
    json_content = False

    def __init__(self, session: DatamodelHost, expressions: list[Expression]) -> None:
        super().__init__(session, expressions)
        self._states = [_parse_in(e.text) if e.kind == "cond" else None for e in expressions]
        self._literals = [_parse_literal(e.text) if e.kind == "value" else None for e in expressions]

    @classmethod
    def check(
        cls, kind: str, text: str, location: str | None = None, extra: tuple[str, ...] = (), *, defer: bool = False
    ) -> str | None:
        # Never deferred: what is not In() or a literal can never run here.
        if kind == "cond":
            return (
                None
                if _parse_in(text) is not None
                else f"the null datamodel only allows In('state') conditions, not {text!r}"
            )
        if kind == "value":
            return (
                None
                if _parse_literal(text) is not None
                else f"the null datamodel only allows quoted string values, not {text!r}"
            )
        if kind == "data":
            return "the null datamodel has no <data>"
        return f"the null datamodel has no {kind} expressions"

    def cond(self, k: int) -> bool:
        state = self._states[k]
        if state is None:
            raise ExecutionError(f"the null datamodel only evaluates In('state'), not {self.expressions[k].text!r}")
        session = self.session
        return session is not None and bool(session.is_active(state))

    def _unsupported(self, k: int) -> Any:
        e = self.expressions[k]
        raise ExecutionError(f"the null datamodel has no {e.kind} expressions ({e.text!r})")

    def value(self, k: int) -> Any:
        literal = self._literals[k]
        if literal is None:
            return self._unsupported(k)
        return literal

    def assign(self, k: int) -> None:
        self._unsupported(k)

    def set_location(self, k: int, value: Any) -> None:
        self._unsupported(k)

    def script(self, k: int) -> None:
        self._unsupported(k)

    def foreach(self, k: int, body: Callable[[], None]) -> None:
        self._unsupported(k)
