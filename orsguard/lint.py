"""``orsguard lint``: static checks for loops and dead parts of an SCXML document.

The loop checks work on a graph whose nodes are transitions: an edge ``t1 -> t2``
means that right after ``t1`` the chart can take ``t2`` without any event from
outside, because ``t2`` is eventless or because ``t1`` (its content, the
``onexit`` of what it leaves, the ``onentry`` of what it enters) queues the event
``t2`` waits for with ``<raise>`` or a zero-delay ``<send>`` to the session itself.
A cycle in that graph is a loop the session can run for ever. It is certain when
no transition on it has a ``cond`` and every event on it is queued outside any
``<if>``/``<foreach>``; the earlier conditional transitions of a state on the
loop are named, since only they can leave it.

Conditions and data are not evaluated, so a conditional loop is only a warning.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from orsguard.chart import COMPOUND, HISTORY, PARALLEL, ROOT, Chart, Emit, Transition, load_chart, matches
from orsguard.errors import DocumentError


@dataclass
class Finding:
    """One lint message; ``transitions`` are machine labels (``"a -> b"``) of a loop, in order."""

    file: str
    line: int
    severity: str  # "error" or "warning"
    check: str  # "eventless-loop", "event-loop", "unreachable", "shadowed", "document"
    message: str
    option: str | None = None
    transitions: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of all fields."""
        return {
            "file": self.file,
            "line": self.line,
            "severity": self.severity,
            "check": self.check,
            "message": self.message,
            "option": self.option,
            "transitions": list(self.transitions),
            "states": list(self.states),
        }


def lint_file(path: str | os.PathLike[str], *, check_expressions: bool = True) -> list[Finding]:
    """Check one document; a document that does not load gives one ``document`` error.

    ``check_expressions=False`` leaves ill-formed expressions to run time, as ``load`` does.
    """
    path = os.fspath(path)
    try:
        chart = load_chart(path, check_expressions=check_expressions)
    except DocumentError as exc:
        return [Finding(path, exc.line or 1, "error", "document", exc.message)]
    return lint_chart(chart)


def lint_chart(chart: Chart) -> list[Finding]:
    """All findings for a loaded chart, sorted by line."""
    dead = _shadowed(chart)
    findings = [f for _, f in dead.values()]
    findings += _unreachable(chart, set(dead))
    findings += _loops(chart, set(dead))
    findings.sort(key=lambda f: (f.line, f.severity != "error", f.message))
    return findings


# ---------------------------------------------------------------- never enabled


def _covers(earlier: tuple[str, ...], later: tuple[str, ...]) -> bool:
    if not earlier or not later:
        return not earlier and not later
    return all(matches(earlier, d) or "*" in earlier for d in later)


def _shadowed(chart: Chart) -> dict[int, tuple[int, Finding]]:
    out: dict[int, tuple[int, Finding]] = {}
    for state in chart.states:
        trans = [chart.transitions[t] for t in state.transitions]
        for i, t in enumerate(trans):
            for w in trans[:i]:
                if w.cond is None and w.index not in out and _covers(w.events, t.events):
                    what = f"event {' '.join(t.events)!r}" if t.events else "eventless"
                    out[t.index] = (
                        w.index,
                        Finding(
                            chart.path,
                            t.line,
                            "warning",
                            "shadowed",
                            f"transition {t.label} ({what}) can never be taken: the transition on line {w.line} "
                            f"in the same state has the same {'event' if t.events else 'trigger'} and no cond, "
                            f"so it always wins",
                            transitions=[t.label],
                            states=[chart.name(state.index)],
                        ),
                    )
                    break
    return out


# ---------------------------------------------------------------- unreachable states


def _default_entry(chart: Chart, s: int) -> list[int]:
    """States a default entry of ``s`` enters below it (initial transitions, all regions, history defaults)."""
    out: list[int] = []
    stack = [s]
    while stack:
        x = stack.pop()
        state = chart.states[x]
        if state.kind in (COMPOUND, ROOT, HISTORY) and state.initial >= 0:
            for y in chart.transitions[state.initial].targets:
                out.append(y)
                stack.append(y)
        elif state.kind == PARALLEL:
            for y in state.children:
                out.append(y)
                stack.append(y)
    return out


def _unreachable(chart: Chart, dead: set[int]) -> list[Finding]:
    reached: set[int] = set()
    stack: list[int] = []

    def enter(x: int) -> None:
        todo = [x]
        while todo:
            z = todo.pop()
            for y in [w for d in [z, *_default_entry(chart, z)] for w in [d, *chart.ancestors(d)]]:
                if y in reached:
                    continue
                reached.add(y)
                stack.append(y)
                state = chart.states[y]
                if state.kind == PARALLEL:
                    todo.extend(state.children)  # regions the target is not in start by default
                elif state.kind == HISTORY:
                    # A history state restores a child its parent had before (shallow) or any descendant (deep).
                    todo.extend(c for c in chart.states[state.parent].children if c in reached)

    enter(0)
    while True:
        while stack:
            s = stack.pop()
            for t in chart.states[s].transitions:
                if t not in dead:
                    for y in chart.transitions[t].targets:
                        enter(y)
        # A history entered earlier may restore states reached only later.
        for h in [s for s in reached if chart.states[s].kind == HISTORY]:
            for c in chart.states[chart.states[h].parent].children:
                if c in reached:
                    for y in _default_entry(chart, c):
                        if y not in reached:
                            enter(y)
        if not stack:
            break
    out = []
    for state in chart.states[1:]:
        # A history state is a pseudo-state; what matters is whether the states it restores are reachable.
        if state.index not in reached and state.kind != HISTORY and chart.states[state.parent].index in reached:
            out.append(
                Finding(
                    chart.path,
                    state.line,
                    "warning",
                    "unreachable",
                    f"state {state.id!r} can never be entered: no transition or initial leads to it",
                    states=[state.id],
                )
            )
    return out


# ---------------------------------------------------------------- loops


@dataclass
class _Step:
    after: set[int]  # states active right after the transition (as far as it decides)
    leaves: list[int]  # the deepest states it enters (empty for a targetless transition)
    emits: list[Emit]


def _domain(chart: Chart, t: Transition) -> int:
    src = t.source
    if t.internal and chart.states[src].kind == COMPOUND and all(chart.is_descendant(x, src) for x in t.targets):
        return src
    for a in chart.ancestors(src):
        if chart.states[a].kind in (COMPOUND, ROOT) and all(chart.is_descendant(x, a) for x in t.targets):
            return a
    return 0


def _step(chart: Chart, t: Transition) -> _Step:
    src = t.source
    if not t.targets:
        after = {src, *chart.ancestors(src), *chart.descendants(src)}
        return _Step(after, [], list(t.emits))
    domain = _domain(chart, t)
    entered: list[int] = []
    for x in t.targets:
        for a in [x, *chart.ancestors(x)]:
            if a == domain:
                break
            if a not in entered:
                entered.append(a)
        entered.extend(y for y in _default_entry(chart, x) if y not in entered)
    exited = [a for a in [src, *chart.ancestors(src)] if a != domain and chart.is_descendant(a, domain)]
    emits = [e for s in exited for e in chart.states[s].onexit] + list(t.emits)
    for s in sorted(entered):
        emits += chart.states[s].onentry
        initial = chart.states[s].initial
        if initial >= 0:
            emits += chart.transitions[initial].emits
    after = set(entered)
    for s in entered:
        after.update(chart.ancestors(s))
    leaves = [
        s
        for s in entered
        if not any(c in entered for c in chart.states[s].children) and chart.states[s].kind != HISTORY
    ]
    return _Step(after, leaves, emits)


def _preempted(chart: Chart, step: _Step, t2: Transition, dead: set[int]) -> bool:
    """True when every state ``step`` enters has, below ``t2``'s source, an eventless transition that always wins."""
    if t2.events or not step.leaves:
        return False
    for leaf in step.leaves:
        if leaf == t2.source or not chart.is_descendant(leaf, t2.source):
            return False
        below = [leaf] + [a for a in chart.ancestors(leaf) if chart.is_descendant(a, t2.source)]
        if not any(
            chart.transitions[x].cond is None and not chart.transitions[x].events and x not in dead
            for s in below
            for x in chart.states[s].transitions
        ):
            return False
    return True


def _trigger(step: _Step, t2: Transition) -> list[Emit]:
    return [e for e in step.emits if matches(t2.events, e.event)]


def _loops(chart: Chart, dead: set[int]) -> list[Finding]:
    nodes = [t for t in chart.transitions if not t.initial and t.index not in dead]
    steps = {t.index: _step(chart, t) for t in nodes}
    # edges[t1] = [(t2, certain, external)]
    edges: dict[int, list[tuple[int, bool, bool]]] = {t.index: [] for t in nodes}
    by_source: dict[int, list[Transition]] = {}
    for t in nodes:
        by_source.setdefault(t.source, []).append(t)
    for t1 in nodes:
        step = steps[t1.index]
        for t2 in (t for s in sorted(step.after) for t in by_source.get(s, ())):
            if _preempted(chart, step, t2, dead):
                continue
            if not t2.events:
                edges[t1.index].append((t2.index, t2.cond is None, False))
                continue
            trig = _trigger(step, t2)
            if trig:
                certain = t2.cond is None and any(e.certain for e in trig)
                external = not any(e.internal for e in trig)
                edges[t1.index].append((t2.index, certain, external))
    findings = []
    for comp in _cycles(list(edges), {k: [v for v, _, _ in vs] for k, vs in edges.items()}):
        certain_edges = {k: [v for v, c, _ in vs if c and v in comp] for k, vs in edges.items() if k in comp}
        certain_cycles = [c for c in _cycles(list(certain_edges), certain_edges)]
        if certain_cycles:
            cycle = _one_cycle(certain_cycles[0], certain_edges)
            findings.append(_loop_finding(chart, cycle, edges, "error"))
        else:
            sub = {k: [v for v, _, _ in vs if v in comp] for k, vs in edges.items() if k in comp}
            findings.append(_loop_finding(chart, _one_cycle(comp, sub), edges, "warning"))
    return findings


def _loop_finding(
    chart: Chart, cycle: list[int], edges: dict[int, list[tuple[int, bool, bool]]], severity: str
) -> Finding:
    trans = [chart.transitions[t] for t in cycle]
    # Start the loop at its first transition in the document, so the message reads in file order.
    first = min(range(len(trans)), key=lambda i: trans[i].line)
    trans = trans[first:] + trans[:first]
    external = any(
        ext for i, t in enumerate(trans) for v, _, ext in edges[t.index] if v == trans[(i + 1) % len(trans)].index
    )
    eventless = all(not t.events for t in trans)
    path = _path(chart, trans)
    lines = ("lines " if len(trans) > 1 else "line ") + _some([str(t.line) for t in trans])
    states = []
    for t in trans:
        if chart.name(t.source) not in states:
            states.append(chart.name(t.source))
    if external:
        # The session's own zero-delay sends are taken in the same processing call, each as a new
        # macrostep: max-microstep-count restarts every lap, the entry count and the timeout do not.
        enters = any(t.targets for t in trans)
        option = "max-state-entry-count" if enters else "process-event-timeout"
        why = "each lap is a new macrostep (a zero-delay <send> to the session itself), so " + (
            "max-state-entry-count (or process-event-timeout, whichever comes first) stops it at run time"
            if enters
            else "only process-event-timeout stops it at run time"
        )
    else:
        option = "max-microstep-count"
        why = "max-microstep-count stops it at run time"
    kind = "eventless loop" if eventless else "loop driven by events the session queues itself"
    if severity == "error":
        escapes = [
            chart.transitions[x]
            for t in trans
            for x in chart.states[t.source].transitions
            if x < t.index and chart.transitions[x].cond is not None
        ]
        tail = ""
        if escapes:
            tail = "; it leaves only when " + _some(
                [f"the cond {e.cond!r} of {e.label} (line {e.line}) holds" for e in escapes], " or "
            )
        message = f"certain infinite {kind}: {path} ({lines}) has no cond{tail}; {why}"
        check = "eventless-loop" if eventless else "event-loop"
    else:
        conds = [f"{t.label}: {t.cond!r}" for t in trans if t.cond is not None]
        uncertain = [e.event for i, t in enumerate(trans) for e in t.emits if not e.certain]
        guarded = "; guarded by " + _some(conds) if conds else ""
        if uncertain:
            guarded += "; events queued conditionally: " + _some(sorted(set(uncertain)))
        message = (
            f"possible infinite {kind} through states {_some([repr(x) for x in states])}: {path} "
            f"({lines}){guarded}; {why}"
        )
        check = "eventless-loop" if eventless else "event-loop"
    return Finding(chart.path, trans[0].line, severity, check, message, option, [t.label for t in trans], states)


def _some(items: list[str], sep: str = ", ", most: int = 8) -> str:
    """At most ``most`` items, then how many more: a loop through 20,000 states still reads as one line."""
    if len(items) <= most:
        return sep.join(items)
    return sep.join(items[:most]) + f"{sep}... ({len(items) - most} more)"


def _path(chart: Chart, trans: list[Transition]) -> str:
    parts = [chart.name(trans[0].source)]
    for t in trans:
        src = chart.name(t.source)
        if parts[-1] != src:
            parts.append(src)
        parts.append(" ".join(chart.name(x) for x in t.targets) if t.targets else src)
        if not t.targets:
            parts[-1] += f" (targetless, event {' '.join(t.events)})" if t.events else " (targetless)"
    if len(parts) > 12:
        parts = parts[:6] + [f"... ({len(parts) - 12} more)"] + parts[-6:]
    return " -> ".join(parts)


def _cycles(nodes: Iterable[int], succ: dict[int, list[int]]) -> list[set[int]]:
    """Strongly connected components that contain a cycle (Tarjan, iterative)."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    out: list[set[int]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            succs = succ.get(v, [])
            if i < len(succs):
                work.append((v, i + 1))
                w = succs[i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in succs:
                    out.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return out


def _one_cycle(comp: set[int], succ: dict[int, list[int]]) -> list[int]:
    """A shortest cycle through the smallest node of a strongly connected component (breadth first)."""
    start = min(comp)
    prev: dict[int, int] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in succ.get(v, []):
                if w not in comp:
                    continue
                if w == start:
                    cycle = [v]
                    while cycle[-1] != start:
                        cycle.append(prev[cycle[-1]])
                    return cycle[::-1]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return [start]
