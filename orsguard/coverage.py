"""State and transition coverage of SCXML documents over many sessions (``pytest --scxml-coverage``).

Sessions are registered before they start (their ``coverage`` flag set, so the
core counts transitions); :meth:`Coverage.harvest` adds up their counters per
document. Documents loaded from the same file, or from the same text, are one
document.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orsguard._core import Machine
    from orsguard.document import Document
    from orsguard.session import Session


@dataclass
class DocumentCoverage:
    """Counters of one document: entries per state, times taken per transition."""

    name: str
    states: list[str]
    state_index: list[int]
    transitions: list[str]
    entered: list[int] = field(default_factory=list)
    taken: list[int] = field(default_factory=list)
    sessions: int = 0

    @property
    def states_entered(self) -> int:
        return sum(1 for c in self.entered if c)

    @property
    def transitions_taken(self) -> int:
        return sum(1 for c in self.taken if c)

    def never_entered(self) -> list[str]:
        return [s for s, c in zip(self.states, self.entered, strict=True) if not c]

    def never_taken(self) -> list[str]:
        return [t for t, c in zip(self.transitions, self.taken, strict=True) if not c]

    def as_dict(self) -> dict[str, Any]:
        return {
            "document": self.name,
            "sessions": self.sessions,
            "states": {
                "entered": self.states_entered,
                "total": len(self.states),
                "percent": _percent(self.states_entered, len(self.states)),
                "counts": dict(zip(self.states, self.entered, strict=True)),
            },
            "transitions": {
                "taken": self.transitions_taken,
                "total": len(self.transitions),
                "percent": _percent(self.transitions_taken, len(self.transitions)),
                "counts": [{"transition": t, "taken": c} for t, c in zip(self.transitions, self.taken, strict=True)],
            },
            "never_entered": self.never_entered(),
            "never_taken": self.never_taken(),
        }


def _percent(part: int, total: int) -> float:
    return round(100.0 * part / total, 1) if total else 100.0


def document_key(document: Document) -> str:
    """How a document is named in reports: its path relative to the working directory, or a digest of its text."""
    if document.path is not None:
        path = os.path.abspath(document.path)
        rel = os.path.relpath(path)
        return path if rel.startswith("..") else rel
    digest = hashlib.sha1(document.source or b"").hexdigest()[:10] if document.source else "inline"
    return f"<{document.name or 'scxml'} {digest}>"


def _describe(machine: Machine) -> tuple[list[str], list[int], list[str]]:
    history = {h for hs in machine.history_children for h in hs}
    index = [s for s in range(1, machine.n) if s not in history]
    states = [machine.ids[s] for s in index]
    transitions = []
    for t in range(machine.ntrans):
        events = machine.events[t]
        transitions.append(machine.labels[t] + (f" on {' '.join(events)}" if events else ""))
    return states, index, transitions


class Coverage:
    """Coverage collected over a test run."""

    def __init__(self) -> None:
        self.documents: dict[str, DocumentCoverage] = {}
        self._live: list[Session] = []

    def add(self, session: Session) -> None:
        """Count ``session`` (not yet started) and the sessions it invokes."""
        session.collect_coverage(self.add)
        self._live.append(session)

    def harvest(self) -> None:
        """Add up the counters of the registered sessions and forget them."""
        live, self._live = self._live, []
        for session in live:
            if session.started:
                self._record(session)

    def _record(self, session: Session) -> None:
        key = document_key(session.document)
        doc = self.documents.get(key)
        machine = session.document.machine
        if doc is None or len(doc.taken) != machine.ntrans:
            states, index, transitions = _describe(machine)
            doc = DocumentCoverage(key, states, index, transitions, [0] * len(states), [0] * len(transitions))
            self.documents[key] = doc
        entries = session.state_entry_counts()
        doc.entered = [c + entries[s] for c, s in zip(doc.entered, doc.state_index, strict=True)]
        doc.taken = [c + n for c, n in zip(doc.taken, session.transition_counts(), strict=True)]
        doc.sessions += 1

    # ------------------------------------------------------------ reports

    def report_lines(self) -> list[str]:
        """The terminal report: one line per document, then what was never reached."""
        lines = []
        for key in sorted(self.documents):
            d = self.documents[key]
            lines.append(
                f"{key}: states {d.states_entered}/{len(d.states)} "
                f"({_percent(d.states_entered, len(d.states))}%), transitions "
                f"{d.transitions_taken}/{len(d.transitions)} "
                f"({_percent(d.transitions_taken, len(d.transitions))}%), {d.sessions} "
                + ("session" if d.sessions == 1 else "sessions")
            )
            if d.never_entered():
                lines.append("  never entered: " + ", ".join(d.never_entered()))
            for t in d.never_taken():
                lines.append("  never taken: " + t)
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {"documents": [self.documents[k].as_dict() for k in sorted(self.documents)]}

    def write_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.as_dict(), f, indent=2)
            f.write("\n")

    def write_html(self, path: str) -> None:
        """One page: a summary table, then per document the states and transitions with their counts."""
        e = html.escape
        out = [
            "<!DOCTYPE html>",
            '<html><head><meta charset="utf-8"><title>SCXML coverage</title>',
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}"
            ".miss{background:#fdd}</style></head><body><h1>SCXML coverage</h1>",
            "<table><tr><th>document</th><th>states</th><th>transitions</th><th>sessions</th></tr>",
        ]
        docs = [self.documents[k] for k in sorted(self.documents)]
        for d in docs:
            out.append(
                f"<tr><td>{e(d.name)}</td><td>{d.states_entered}/{len(d.states)} "
                f"({_percent(d.states_entered, len(d.states))}%)</td><td>{d.transitions_taken}/"
                f"{len(d.transitions)} ({_percent(d.transitions_taken, len(d.transitions))}%)</td>"
                f"<td>{d.sessions}</td></tr>"
            )
        out.append("</table>")
        for d in docs:
            out.append(f"<h2>{e(d.name)}</h2><table><tr><th>state</th><th>entries</th></tr>")
            for s, c in zip(d.states, d.entered, strict=True):
                out.append(f"<tr{' class=miss' if not c else ''}><td>{e(s)}</td><td>{c}</td></tr>")
            out.append("</table><table><tr><th>transition</th><th>taken</th></tr>")
            for t, c in zip(d.transitions, d.taken, strict=True):
                out.append(f"<tr{' class=miss' if not c else ''}><td>{e(t)}</td><td>{c}</td></tr>")
            out.append("</table>")
        out.append("</body></html>")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(out) + "\n")
