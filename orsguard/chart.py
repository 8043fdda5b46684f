"""A static view of a loaded document for ``orsguard lint`` and ``orsguard diagram``.

:func:`load_chart` loads the document with :func:`orsguard.load` (so everything
the interpreter rejects is rejected here too) and reads the same file again with
lxml to keep what the compiled tables drop: the source line of every state and
transition, each transition's ``cond`` text, and the events its executable
content raises or sends to the session itself. States and transitions are
numbered exactly as in the document's :class:`~orsguard._core.Machine`, so a
transition index here is an index into ``machine.labels``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from lxml import etree

from orsguard.document import Document, event_descriptor, load
from orsguard.errors import DocumentError
from orsguard.executable import _Q, local, parse_delay, sourceline

ROOT, ATOMIC, COMPOUND, PARALLEL, FINAL, HISTORY = "scxml", "state", "compound", "parallel", "final", "history"

_STATE_TAGS = ("state", "parallel", "final", "history")


@dataclass(frozen=True)
class Emit:
    """An event that executable content queues for its own session."""

    event: str
    line: int
    internal: bool  # <raise> or <send target="#_internal">; False: a zero-delay <send> to the session itself
    certain: bool  # not inside <if> or <foreach>


@dataclass
class State:
    """One state of the chart, numbered as in the compiled machine (0 = ``<scxml>``)."""

    index: int
    id: str
    kind: str
    parent: int
    line: int
    children: list[int] = field(default_factory=list)
    history_children: list[int] = field(default_factory=list)
    transitions: list[int] = field(default_factory=list)  # selectable ones, document order
    initial: int = -1  # initial / history default transition
    onentry: list[Emit] = field(default_factory=list)
    onexit: list[Emit] = field(default_factory=list)
    deep: bool = False  # a deep <history>


@dataclass
class Transition:
    """One transition; ``events`` empty means eventless; ``initial`` marks an initial/default one."""

    index: int
    source: int
    targets: list[int]
    events: tuple[str, ...]
    cond: str | None
    internal: bool
    line: int
    initial: bool
    emits: list[Emit]
    label: str = ""


@dataclass
class Chart:
    """States, transitions and the loaded :class:`~orsguard.document.Document`."""

    path: str
    document: Document
    states: list[State]
    transitions: list[Transition]

    def ancestors(self, s: int) -> list[int]:
        """Proper ancestors of ``s``, nearest first (ending with the root 0)."""
        out = []
        p = self.states[s].parent
        while p >= 0:
            out.append(p)
            p = self.states[p].parent
        return out

    def is_descendant(self, a: int, b: int) -> bool:
        """True when ``a`` is a proper descendant of ``b``."""
        return b in self.ancestors(a)

    def descendants(self, s: int) -> list[int]:
        """Proper descendants of ``s`` (history states included)."""
        out: list[int] = []
        stack = list(self.states[s].children) + list(self.states[s].history_children)
        while stack:
            c = stack.pop()
            out.append(c)
            stack.extend(self.states[c].children)
            stack.extend(self.states[c].history_children)
        return out

    def name(self, s: int) -> str:
        return "<scxml>" if s == 0 else self.states[s].id


def load_chart(path: str | os.PathLike[str], *, check_expressions: bool = True) -> Chart:
    """Load ``path`` and build its chart; raises :class:`~orsguard.DocumentError` like ``load``."""
    path = os.fspath(path)
    require_regular_file(path)
    document = load(path, check_expressions=check_expressions)
    with open(path, "rb") as f:
        data = f.read()
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True, remove_pis=True
    )
    root = etree.fromstring(data, parser)
    return _Builder(path, document).build(root)


def require_regular_file(path: str) -> None:
    """Refuse a FIFO or a device before reading it: it could block or never end."""
    if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
        raise DocumentError("not a regular file", file=path)


class _Builder:
    def __init__(self, path: str, document: Document) -> None:
        self.path = path
        self.document = document
        self.states: list[State] = []
        self.elements: list[etree._Element] = []
        self.transitions: list[Transition] = []

    def build(self, root: etree._Element) -> Chart:
        self.states.append(State(0, "__scxml__", ROOT, -1, sourceline(root) or 1))
        self.elements.append(root)
        self._number(root, 0)
        # Document order: a state's own transitions, then its initial one (as the loader adds them).
        for s, el in enumerate(self.elements):
            state = self.states[s]
            if state.kind != HISTORY:
                for c in _children(el, "transition"):
                    state.transitions.append(
                        self._add(
                            s,
                            c,
                            c.get("event"),
                            c.get("cond"),
                            c.get("target"),
                            c.get("type") == "internal",
                            initial=False,
                        )
                    )
            for block in _children(el, "onentry"):
                state.onentry.extend(_emits(block))
            for block in _children(el, "onexit"):
                state.onexit.extend(_emits(block))
            self._initial(s, el)
        machine = self.document.machine
        for t in self.transitions:
            t.label = machine.labels[t.index]
        if len(self.transitions) != machine.ntrans or len(self.states) != machine.n:
            raise DocumentError("internal error: the chart does not match the compiled document", file=self.path)
        return Chart(self.path, self.document, self.states, self.transitions)

    def _number(self, el: etree._Element, index: int) -> None:
        for c in el:
            name = local(c)
            if not isinstance(c.tag, str) or not c.tag.startswith(_Q) or name not in _STATE_TAGS:
                continue
            i = len(self.states)
            sid = self.document.machine.ids[i]
            if name == "state":
                has_children = any(
                    local(g) in ("state", "parallel", "final") and g.tag.startswith(_Q)
                    for g in c
                    if isinstance(g.tag, str)
                )
                kind = COMPOUND if has_children else ATOMIC
            else:
                kind = {"parallel": PARALLEL, "final": FINAL, "history": HISTORY}[name]
            self.states.append(State(i, sid, kind, index, sourceline(c) or 1, deep=c.get("type") == "deep"))
            self.elements.append(c)
            if kind == HISTORY:
                self.states[index].history_children.append(i)
            else:
                self.states[index].children.append(i)
                self._number(c, i)

    def _add(
        self,
        s: int,
        el: etree._Element | None,
        event: str | None,
        cond: str | None,
        target: str | None,
        internal: bool,
        *,
        initial: bool,
        line: int | None = None,
    ) -> int:
        index_of = self.document.machine.index_of
        targets = [index_of[x] for x in (target or "").split() if x in index_of]
        events = tuple(event_descriptor(d) for d in (event or "").split())
        t = Transition(
            len(self.transitions),
            s,
            targets,
            events,
            cond,
            internal,
            line or (sourceline(el) if el is not None else None) or self.states[s].line,
            initial,
            _emits(el) if el is not None else [],
        )
        self.transitions.append(t)
        return t.index

    def _initial(self, s: int, el: etree._Element) -> None:
        state = self.states[s]
        if state.kind == HISTORY:
            trans = _children(el, "transition")
            if trans:
                state.initial = self._add(s, trans[0], None, None, trans[0].get("target"), False, initial=True)
            else:
                default = self._first_child(state.parent)
                state.initial = self._add(s, None, None, None, default, False, initial=True)
            return
        if state.kind not in (COMPOUND, ROOT):
            return
        initial_els = _children(el, "initial")
        if initial_els:
            t = _children(initial_els[0], "transition")[0]
            state.initial = self._add(s, t, None, None, t.get("target"), False, initial=True)
        elif el.get("initial") is not None:
            state.initial = self._add(s, None, None, None, el.get("initial"), False, initial=True, line=sourceline(el))
        else:
            state.initial = self._add(
                s, None, None, None, self._first_child(s), False, initial=True, line=sourceline(el)
            )

    def _first_child(self, s: int) -> str | None:
        children = self.states[s].children
        return self.states[children[0]].id if children else None


def _children(el: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in el if isinstance(c.tag, str) and c.tag == _Q + name]


def _emits(block: etree._Element, certain: bool = True) -> list[Emit]:
    """Events that ``block``'s executable content queues for its own session, with a literal name."""
    out: list[Emit] = []
    for c in block:
        name = local(c)
        if not isinstance(c.tag, str) or not c.tag.startswith(_Q):
            continue
        line = sourceline(c) or 0
        event = c.get("event")
        if name == "raise" and event:
            out.append(Emit(event, line, True, certain))
        elif name == "send" and event and c.get("targetexpr") is None and c.get("typeexpr") is None:
            target = c.get("target")
            if target not in (None, "#_internal") or c.get("type") not in (
                None,
                "scxml",
                "http://www.w3.org/TR/scxml/#SCXMLEventProcessor",
            ):
                continue
            if target is None and not _zero_delay(c):
                continue
            out.append(Emit(event, line, target == "#_internal", certain))
        elif name in ("if", "foreach"):
            out.extend(_emits(c, certain=False))
    return out


def _zero_delay(el: etree._Element) -> bool:
    if el.get("delayexpr") is not None:
        return False
    delay = el.get("delay")
    if delay is None:
        return True
    try:
        return parse_delay(delay) == 0
    except Exception:  # an invalid delay raises error.execution at run time: nothing is sent
        return False


def matches(descriptors: tuple[str, ...], event: str) -> bool:
    """Spec 3.12.1: does a transition's event descriptor list match ``event``?"""
    for d in descriptors:
        if d == "*" or event == d or event.startswith(d + "."):
            return True
    return False
