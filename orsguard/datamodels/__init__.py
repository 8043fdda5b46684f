"""Datamodels: where a session's variables live and its expressions are evaluated.

A document's expressions are registered once at load time in an
:class:`Expressions` table; each session's datamodel compiles the entries it
uses (once per session) and the compiled executable content refers to them by
index. ``ecmascript`` is the default, as in ORS; ``null`` supports ``In()`` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orsguard.datamodels.base import Datamodel, Expression

__all__ = ["DATAMODELS", "Datamodel", "Expression", "Expressions", "datamodel_class"]


@dataclass
class Expressions:
    """Every expression of one document, in the order the compiler met them."""

    items: list[Expression] = field(default_factory=list)

    def add(
        self, kind: str, text: str, *, line: int | None = None, location: str | None = None, extra: tuple[str, ...] = ()
    ) -> int:
        self.items.append(Expression(kind, text, line, location, extra))
        return len(self.items) - 1


def _ecmascript() -> type[Datamodel]:
    from orsguard.datamodels.ecmascript import EcmaScriptDatamodel

    return EcmaScriptDatamodel


def _null() -> type[Datamodel]:
    from orsguard.datamodels.null import NullDatamodel

    return NullDatamodel


DATAMODELS = {"ecmascript": _ecmascript, "null": _null}


def datamodel_class(name: str) -> type[Datamodel]:
    """The datamodel class for a document's ``datamodel`` attribute (KeyError when unknown)."""
    return DATAMODELS[name]()
