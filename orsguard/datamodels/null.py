"""The ``null`` datamodel: no variables; conditions may only be ``In('state')``.

String literals are accepted as values (for ``<log expr="'text'"/>``).
"""

from __future__ import annotations

import re
from typing import Any

from orsguard.datamodels.base import Datamodel, Expression
from orsguard.errors import ExecutionError

_IN = re.compile(r"""^\s*In\(\s*(?:'([^']*)'|"([^"]*)")\s*\)\s*$""")
_LITERAL = re.compile(r"""^\s*(?:'([^']*)'|"([^"]*)")\s*$""")


def parse_literal(text: str) -> str | None:
    """The value of a quoted string literal (allowed in ``<log>``), or None."""
    m = _LITERAL.match(text)
    if m is None:
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


def parse_in(text: str) -> str | None:
    """The state id of an ``In('id')`` condition, or None when ``text`` is something else."""
    m = _IN.match(text)
    if m is None:
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


class NullDatamodel(Datamodel):
    """Spec section B.1: the only expression is the ``In()`` predicate."""

    name = "null"
    reads_event = False

    def __init__(self, session: Any, expressions: list[Expression]) -> None:
        super().__init__(session, expressions)
        self._states = [parse_in(e.text) if e.kind == "cond" else None for e in expressions]
        self._literals = [parse_literal(e.text) if e.kind == "value" else None for e in expressions]

    def cond(self, k: int) -> bool:
        state = self._states[k]
        if state is None:
            raise ExecutionError(f"the null datamodel only evaluates In('state'), not {self.expressions[k].text!r}")
        return bool(self.session.is_active(state))

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

    def foreach(self, k: int, body: Any) -> None:
        self._unsupported(k)
