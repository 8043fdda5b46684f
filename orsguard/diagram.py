"""``orsguard diagram``: a document's statechart as Graphviz DOT or Mermaid text.

Compound and parallel states are clusters (a parallel state's border is
dashed), eventless transitions dashed lines, targetless transitions loops on
their state. A loop to highlight, from ``orsguard run --json`` (the termination's
trail) or ``orsguard lint --json`` (the findings' transitions), is drawn in red.
SVG and PNG come from Graphviz's ``dot`` program.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable

from orsguard.chart import COMPOUND, FINAL, HISTORY, PARALLEL, ROOT, Chart, Transition
from orsguard.errors import OrsguardError

RED = "#d62728"

#: Output formats and the ``dot -T`` format that renders them (None: text written by orsguard).
FORMATS = {"dot": None, "mermaid": None, "svg": "svg", "png": "png"}
_EXTENSIONS = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".svg": "svg", ".png": "png"}


class DiagramError(OrsguardError):
    """A diagram that cannot be produced (no Graphviz, a bad highlight file, a bad output name)."""


def format_for(output: str | None, fmt: str | None) -> str:
    """The format ``--format`` names, else the one ``-o``'s extension implies, else Mermaid."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise DiagramError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
        return fmt
    if output is not None:
        ext = os.path.splitext(output)[1].lower()
        if ext not in _EXTENSIONS:
            raise DiagramError(f"cannot tell the format from {output!r}: use .svg, .png, .dot or .mmd, or --format")
        return _EXTENSIONS[ext]
    return "mermaid"


# ---------------------------------------------------------------- highlight


def trail_loop(trail: list[str]) -> list[str]:
    """The cycle the end of a trail repeats (at least twice), else the whole trail."""
    n = len(trail)
    for period in range(1, n // 2 + 1):
        tail = trail[n - 2 * period :]
        if tail[:period] == tail[period:]:
            return trail[n - period :]
    return list(trail)


def highlight_labels(data: object, document_path: str | None = None) -> list[str]:
    """Transition labels to draw in red from ``run --json``, a termination, or ``lint --json`` output."""
    if isinstance(data, dict) and isinstance(data.get("termination"), dict):
        data = data["termination"]
    if isinstance(data, dict) and isinstance(data.get("trail"), list):
        return trail_loop([str(x) for x in data["trail"]])
    if isinstance(data, dict) and "termination" in data and data["termination"] is None:
        return []
    if isinstance(data, dict) and isinstance(data.get("findings"), list):
        findings = [f for f in data["findings"] if isinstance(f, dict)]
        mine = [
            f
            for f in findings
            if document_path is not None
            and isinstance(f.get("file"), str)
            and os.path.abspath(f["file"]) == os.path.abspath(document_path)
        ]
        out: list[str] = []
        for f in mine or findings:
            if isinstance(f.get("transitions"), list) and str(f.get("check", "")).endswith("loop"):
                out.extend(str(x) for x in f["transitions"])
        return out
    raise DiagramError("the highlight file is neither `orsguard run --json` nor `orsguard lint --json` output")


def read_highlight(path: str, document_path: str | None = None) -> list[str]:
    """Read a highlight JSON file; :class:`DiagramError` names the file when it cannot."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise DiagramError(f"{path}: cannot read: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DiagramError(f"{path}: not JSON ({exc})") from None
    try:
        return highlight_labels(data, document_path)
    except DiagramError as exc:
        raise DiagramError(f"{path}: {exc}") from None


def _marked(chart: Chart, labels: Iterable[str]) -> set[int]:
    wanted = set(labels)
    return {t.index for t in chart.transitions if not t.initial and t.label in wanted}


# ---------------------------------------------------------------- DOT


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _edge_label(t: Transition) -> str:
    parts = []
    if t.events:
        parts.append(" ".join(t.events))
    if t.cond is not None:
        parts.append(f"[{' '.join(t.cond.split())}]")
    return " ".join(parts)


def to_dot(chart: Chart, highlight: Iterable[str] = ()) -> str:
    """The chart as Graphviz DOT text; transitions whose label is in ``highlight`` are red."""
    marked = _marked(chart, highlight)
    on_loop = {chart.transitions[t].source for t in marked} | {x for t in marked for x in chart.transitions[t].targets}
    name = chart.document.name or os.path.basename(chart.path)
    lines = [
        "digraph statechart {",
        "  compound=true; rankdir=LR; newrank=true; nodesep=0.5; ranksep=0.9;",
        f'  label={_q(name)}; labelloc=t; fontname="Helvetica";',
        '  node [fontname="Helvetica", fontsize=11]; edge [fontname="Helvetica", fontsize=9];',
        '  s0_init [shape=point, width=0.15, label=""];',
    ]

    def anchor(s: int) -> str:
        # Edges to or from a cluster attach to a point inside it and are clipped at its border.
        return f"s{s}_init" if chart.states[s].kind in (COMPOUND, PARALLEL, ROOT) else f"s{s}"

    def emit(s: int, indent: str) -> None:
        state = chart.states[s]
        red = ', color="' + RED + '", fontcolor="' + RED + '", penwidth=2' if s in on_loop else ""
        if state.kind in (COMPOUND, PARALLEL):
            lines.append(f"{indent}subgraph cluster_{s} {{")
            style = "dashed,rounded" if state.kind == PARALLEL else "rounded"
            tag = " (parallel)" if state.kind == PARALLEL else ""
            lines.append(
                f'{indent}  label={_q(state.id + tag)}; style="{style}";'
                + (f' color="{RED}"; fontcolor="{RED}";' if s in on_loop else "")
            )
            shape = "point" if state.kind == COMPOUND else "point, style=invis"
            lines.append(f'{indent}  s{s}_init [shape={shape}, width=0.1, label=""];')
            for c in state.history_children + state.children:
                emit(c, indent + "  ")
            lines.append(f"{indent}}}")
        elif state.kind == HISTORY:
            mark = "H*" if state.deep else "H"
            lines.append(f"{indent}s{s} [shape=circle, width=0.3, label={_q(mark)}, tooltip={_q(state.id)}{red}];")
        elif state.kind == FINAL:
            lines.append(f'{indent}s{s} [shape=box, style="rounded", peripheries=2, label={_q(state.id)}{red}];')
        else:
            lines.append(f'{indent}s{s} [shape=box, style="rounded", label={_q(state.id)}{red}];')

    for c in chart.states[0].children:
        emit(c, "  ")
    for t in chart.transitions:
        attrs = []
        if t.initial and chart.states[t.source].kind == HISTORY:
            attrs.append("style=dotted")
        if not t.initial:
            label = _edge_label(t)
            if label:
                attrs.append(f"label={_q(label)}")
            if not t.events:
                attrs.append("style=dashed")
        if t.index in marked:
            attrs.append(f'color="{RED}", fontcolor="{RED}", penwidth=2.5')
        clustered = (COMPOUND, PARALLEL)
        for x in t.targets or [t.source]:
            if t.initial and t.source == x:
                continue
            edge = list(attrs)
            # Clip at a cluster's border only when the other end lies outside that cluster.
            if (
                not t.initial
                and chart.states[t.source].kind in clustered
                and x != t.source
                and not chart.is_descendant(x, t.source)
            ):
                edge.append(f"ltail=cluster_{t.source}")
            if chart.states[x].kind in clustered and x != t.source and not chart.is_descendant(t.source, x):
                edge.append(f"lhead=cluster_{x}")
            lines.append(f"  {anchor(t.source)} -> {anchor(x)}" + (f" [{', '.join(edge)}]" if edge else "") + ";")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- Mermaid


def _m(text: str) -> str:
    # Mermaid ends a label at a newline and treats ';' and '#' specially: use its entity codes.
    return " ".join(text.split()).replace("#", "#35;").replace(";", "#59;").replace(":", "#58;")


def to_mermaid(chart: Chart, highlight: Iterable[str] = ()) -> str:
    """The chart as a Mermaid ``stateDiagram-v2``; states on a highlighted loop get the class ``loop``."""
    marked = _marked(chart, highlight)
    on_loop = sorted(
        {chart.transitions[t].source for t in marked} | {x for t in marked for x in chart.transitions[t].targets}
    )
    lines = ["stateDiagram-v2"]

    def ref(s: int) -> str:
        return f"s{s}"

    def emit(s: int, indent: str) -> None:
        state = chart.states[s]
        lines.append(f'{indent}state "{_m(state.id)}" as {ref(s)}')
        if state.kind in (COMPOUND, PARALLEL):
            lines.append(f"{indent}state {ref(s)} {{")
            children = state.children
            for i, c in enumerate(children):
                if state.kind == PARALLEL and i:
                    lines.append(f"{indent}  --")
                emit(c, indent + "  ")
            for h in state.history_children:
                emit(h, indent + "  ")
            if state.kind == COMPOUND and state.initial >= 0:
                for x in chart.transitions[state.initial].targets:
                    lines.append(f"{indent}  [*] --> {ref(x)}")
            lines.append(f"{indent}}}")
        elif state.kind == FINAL and state.parent == 0:
            lines.append(f"{indent}{ref(s)} --> [*]")

    for c in chart.states[0].children:
        emit(c, "  ")
    for x in chart.transitions[chart.states[0].initial].targets:
        lines.append(f"  [*] --> {ref(x)}")
    for t in chart.transitions:
        if t.initial:
            continue
        label = _edge_label(t) or "(eventless)"
        if t.index in marked:
            label = "LOOP " + label
        for x in t.targets or [t.source]:
            lines.append(f"  {ref(t.source)} --> {ref(x)} : {_m(label)}")
    if on_loop:
        lines.append(f"  classDef loop stroke:{RED},stroke-width:3px,color:{RED}")
        lines.append(f"  class {','.join(ref(s) for s in on_loop)} loop")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- rendering


def render(dot_text: str, fmt: str) -> bytes:
    """Run Graphviz ``dot`` to turn DOT text into SVG or PNG bytes."""
    exe = shutil.which("dot")
    if exe is None:
        raise DiagramError(
            "SVG and PNG need Graphviz's `dot` program (Debian: apt-get install graphviz); "
            "--format dot or mermaid print text without it"
        )
    try:
        extra = ["-Gdpi=120"] if fmt == "png" else []
        done = subprocess.run(
            [exe, f"-T{FORMATS[fmt]}", *extra],
            input=dot_text.encode("utf-8"),
            capture_output=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DiagramError("Graphviz took more than 120 s to lay the chart out") from None
    if done.returncode != 0:
        raise DiagramError(f"Graphviz failed: {done.stderr.decode('utf-8', 'replace').strip()}")
    return done.stdout


def diagram(chart: Chart, fmt: str, highlight: Iterable[str] = ()) -> bytes:
    """The chart in ``fmt`` (dot, mermaid, svg or png) as bytes."""
    highlight = list(highlight)
    if fmt == "mermaid":
        return to_mermaid(chart, highlight).encode("utf-8")
    text = to_dot(chart, highlight)
    if fmt == "dot":
        return text.encode("utf-8")
    return render(text, fmt)
