"""``orsguard replay``: run recorded traffic on a virtual clock and report how close it came to each limit.

Traffic is JSON lines sorted by ``t`` (seconds)::

    {"t": 12.5, "session": "s1", "document": "route", "start": true, "data": {...}}
    {"t": 14.0, "session": "s1", "event": "call", "data": {...}}

Every session runs under the given limits on one shared
:class:`~orsguard.VirtualClock`, so timers fire at their virtual times between
the lines. When a session ends (or the replay does) its peaks
(``session.peaks``, the high-water mark of each of the five limits) are kept;
per document the report gives the maximum, the median and the 99th percentile
of each, how many sessions the limit stopped, and a suggested limit (the
maximum times a margin, rounded up to a readable number). A line or a document
that cannot be used is reported with its file and line and the replay goes on.
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TextIO

from orsguard._core import Stats
from orsguard.clock import VirtualClock
from orsguard.document import Document, load
from orsguard.errors import DocumentError, OrsguardError
from orsguard.limits import OPTION_NAMES, Limits
from orsguard.session import Session

OPTIONS = tuple(OPTION_NAMES.values())
_COUNTS = ("max-microstep-count", "max-state-entry-count", "max-pending-events")
_READABLE = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)
#: The unit each time option has in an ORS options file, in seconds.
UNITS = {"process-event-timeout": 0.001, "max-session-age": 1.0}
#: Progress goes to stderr at most this often (wall seconds) during a long replay.
PROGRESS_EVERY = 2.0


class ReplayError(OrsguardError):
    """The traffic file cannot be read at all (the per-line problems are :class:`Problem` s)."""


@dataclass
class Problem:
    """A traffic line or a document the replay could not use."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line is not None else f"{self.file}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "message": self.message}


@dataclass
class SessionResult:
    """One replayed session: where it came from, how it ended and its peaks."""

    name: str
    document: str
    line: int
    peaks: dict[str, Any]
    final: str | None
    termination: dict[str, Any] | None
    text: str | None  # the termination as one sentence, with its loop
    events: int = 0


@dataclass
class _Live:
    session: Session
    result: SessionResult


@dataclass
class Replay:
    """The outcome of a replay: every session's result and every problem, in order."""

    traffic: str
    limits: Limits
    margin: float
    sessions: list[SessionResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    dropped: int = 0  # events for sessions that had already ended

    def documents(self) -> dict[str, list[SessionResult]]:
        out: dict[str, list[SessionResult]] = {}
        for r in self.sessions:
            out.setdefault(r.document, []).append(r)
        return out

    def report(self) -> dict[str, Any]:
        """The JSON report: ``{"documents": {NAME: {"sessions", "events", "limits": {OPTION: {...}}}}}`` and more."""
        configured = self.limits.by_option()
        docs: dict[str, Any] = {}
        for name, results in sorted(self.documents().items()):
            limits = {}
            for option in OPTIONS:
                values = sorted(r.peaks[option] for r in results)
                limits[option] = {
                    "max": values[-1],
                    "p50": percentile(values, 0.50),
                    "p99": percentile(values, 0.99),
                    "limit": configured[option],
                    "stopped": sum(1 for r in results if r.termination and r.termination["option"] == option),
                    "suggested": suggest(values[-1], self.margin, option in _COUNTS, unit=UNITS.get(option, 1.0)),
                }
            docs[name] = {
                "sessions": len(results),
                "events": self.events.get(name, 0),
                "limits": limits,
                "stopped_sessions": [
                    {"session": r.name, "line": r.line, "termination": r.termination, "text": r.text}
                    for r in results
                    if r.termination is not None
                ],
            }
        return {
            "documents": docs,
            "traffic": self.traffic,
            "margin": self.margin,
            "configured_limits": configured,
            "problems": [p.as_dict() for p in self.problems],
            "dropped_events": self.dropped,
        }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


def suggest(observed: float, margin: float, count: bool, unit: float = 1.0) -> float:
    """``observed * margin`` rounded up to 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten.

    Never below ``observed``, never below one ``unit`` (the smallest value the option file can hold:
    1 for counts, 0.001 s for process-event-timeout, which ORS takes in milliseconds), and so never
    0, which would switch the limit off.
    """
    target = max(observed * margin, observed, unit if not count else 1)
    if count:
        unit = 1
    exp = math.floor(math.log10(target))
    for step in _READABLE:
        value = step * 10.0**exp
        if value >= target * (1 - 1e-12):
            break
    value = max(value, observed)
    if count:
        return max(1, math.ceil(value))
    return float(f"{math.ceil(value / unit - 1e-9) * unit:.6g}")


# ---------------------------------------------------------------- reading traffic


def _records(path: str, problems: list[Problem]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Valid traffic lines as (line number, record); the others become problems."""
    # A FIFO or a device would block or never end: only regular files are traffic.
    if not os.path.isfile(path):
        raise ReplayError(f"{path}: not a regular file" if os.path.exists(path) else f"{path}: no such file")
    try:
        f = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - a generator keeps it open
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read: {exc.strerror}") from None
    last_t = -math.inf
    with f:
        for lineno, text in enumerate(f, 1):
            if not text.strip():
                continue

            def bad(message: str, lineno: int = lineno) -> None:
                problems.append(Problem(path, lineno, message))

            try:
                rec = json.loads(text)
            except (ValueError, RecursionError) as exc:  # RecursionError: nesting too deep
                bad(f"not JSON ({exc})")
                continue
            if not isinstance(rec, dict):
                bad("a traffic line must be a JSON object")
                continue
            t = rec.get("t")
            # An integer beyond double range (JSON allows any) is as unusable as an infinity.
            if (
                isinstance(t, bool)
                or not isinstance(t, (int, float))
                or abs(t) > 1e300
                or not math.isfinite(t)
                or t < 0
            ):
                bad(f"'t' must be a number of seconds >= 0, got {t!r}")
                continue
            if t < last_t:
                bad(f"'t' {t:g} is earlier than the line before ({last_t:g}): traffic must be sorted by time")
                continue
            name = rec.get("session")
            if not isinstance(name, str) or not name:
                bad("'session' must be a non-empty string")
                continue
            if rec.get("start") is True:
                doc = rec.get("document")
                if not isinstance(doc, str) or not doc:
                    bad("a start needs 'document', the name of a document in the documents directory")
                    continue
                if rec.get("data") is not None and not isinstance(rec.get("data"), dict):
                    bad("'data' of a start must be an object (it overrides top-level <data>)")
                    continue
            elif "start" in rec:
                bad("'start' may only be true")
                continue
            else:
                event = rec.get("event")
                if not isinstance(event, str) or not event or any(c.isspace() for c in event):
                    bad("a line needs \"start\": true or 'event', an event name without spaces")
                    continue
            last_t = float(t)
            yield lineno, rec


# ---------------------------------------------------------------- replaying


class _Documents:
    def __init__(self, directory: str, problems: list[Problem], traffic: str) -> None:
        self.directory = directory
        self.problems = problems
        self.traffic = traffic
        self.cache: dict[str, Document | None] = {}

    def get(self, name: str, lineno: int) -> Document | None:
        if name in self.cache:
            doc = self.cache[name]
            if doc is None:
                self.problems.append(Problem(self.traffic, lineno, f"document {name!r} cannot be loaded"))
            return doc
        doc = None
        if name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
            self.problems.append(Problem(self.traffic, lineno, f"document {name!r}: a name, not a path"))
        else:
            base = name if name.endswith(".scxml") else name + ".scxml"
            path = os.path.join(self.directory, base)
            try:
                if not os.path.isfile(path):
                    raise DocumentError("no such document (expected a regular file)", file=path)
                doc = load(path)
            except DocumentError as exc:
                self.problems.append(Problem(exc.file or path, exc.line, exc.message))
                self.problems.append(Problem(self.traffic, lineno, f"document {name!r} cannot be loaded"))
            except Exception as exc:  # a loader failure must not end the replay of the other documents
                self.problems.append(Problem(path, None, f"cannot load: {type(exc).__name__}: {exc}"))
                self.problems.append(Problem(self.traffic, lineno, f"document {name!r} cannot be loaded"))
        self.cache[name] = doc
        return doc


def replay(
    traffic: str,
    documents: str,
    limits: Limits,
    *,
    margin: float = 2.0,
    drain: float = 60.0,
    progress: TextIO | None = None,
    on_problem: Callable[[Problem], None] | None = None,
) -> Replay:
    """Replay ``traffic`` against the documents in ``documents`` under ``limits``.

    After the last line, timers run for ``drain`` more virtual seconds; sessions
    still running then are measured as they are.
    """
    if not os.path.isdir(documents):
        raise ReplayError(f"{documents}: not a directory")
    out = Replay(traffic, limits, margin)
    problems: list[Problem] = []
    reported = 0

    def flush_problems() -> None:
        nonlocal reported
        while reported < len(problems):
            out.problems.append(problems[reported])
            if on_problem is not None:
                on_problem(problems[reported])
            reported += 1

    clock = VirtualClock()
    stats = Stats()
    docs = _Documents(documents, problems, traffic)
    live: dict[str, _Live] = {}
    ended: set[str] = set()
    last_progress = time.monotonic()

    def finish(entry: _Live) -> None:
        s = entry.session
        r = entry.result
        r.peaks = s.peaks.as_dict()
        r.final = s.final
        if s.termination is not None:
            r.termination = s.termination.as_dict()
            r.text = str(s.termination)
        out.sessions.append(r)

    # Results are read once the session's own call has returned: the core settles the peaks of the
    # macrostep a limit stopped after on_end. An ended session stays referenced (by its cancelled
    # timers, until the clock reaches them), so its script engine is freed explicitly then too.
    to_close: list[_Live] = []

    def on_end(session: Session) -> None:
        entry = live.pop(session.session_id, None)
        if entry is not None:
            ended.add(entry.result.name)
            to_close.append(entry)

    def close_ended() -> None:
        while to_close:
            entry = to_close.pop()
            finish(entry)
            entry.session.dm.close()

    by_name: dict[str, str] = {}  # traffic session name -> live session id
    for lineno, rec in _records(traffic, problems):
        flush_problems()
        clock.advance_to(float(rec["t"]))
        close_ended()
        name = rec["session"]
        if rec.get("start") is True:
            sid = by_name.get(name)
            if sid is not None and sid in live:
                problems.append(Problem(traffic, lineno, f"session {name!r} is already running"))
                continue
            doc = docs.get(rec["document"], lineno)
            if doc is None:
                continue
            doc_name = rec["document"].removesuffix(".scxml")
            try:
                session = Session(
                    doc,
                    limits=limits,
                    clock=clock,
                    stats=stats,
                    data=rec.get("data") or None,
                    on_end=on_end,
                    on_log=_quiet,
                )
            except Exception as exc:  # e.g. a limit beyond what the core holds
                problems.append(Problem(traffic, lineno, f"session {name!r} cannot be created: {exc}"))
                continue
            entry = _Live(session, SessionResult(name, doc_name, lineno, {}, None, None, None))
            live[session.session_id] = entry
            by_name[name] = session.session_id
            ended.discard(name)
            if not _guarded(session.start, problems, traffic, lineno, name):
                live.pop(session.session_id, None)
                session.on_end = None
                if session.running:
                    session.cancel()
                session.dm.close()
        else:
            sid = by_name.get(name)
            target = live.get(sid) if sid is not None else None
            if target is None:
                if name in ended:
                    out.dropped += 1
                else:
                    problems.append(Problem(traffic, lineno, f"event for session {name!r}, which was never started"))
                continue
            target.result.events += 1
            out.events[target.result.document] = out.events.get(target.result.document, 0) + 1
            _guarded(partial(_send_recorded, target.session, rec), problems, traffic, lineno, name)
        if progress is not None and time.monotonic() - last_progress >= PROGRESS_EVERY:
            last_progress = time.monotonic()
            print(
                f"replay: line {lineno}, t={clock.now():g} s, {len(live)} sessions running, {len(out.sessions)} ended",
                file=progress,
            )
    flush_problems()
    if drain > 0:
        clock.run_until(clock.now() + drain, stop=lambda: not live)
    close_ended()
    for entry in list(live.values()):
        finish(entry)
        entry.session.on_end = None
        entry.session.cancel()
        entry.session.dm.close()
    live.clear()
    flush_problems()
    # Report in traffic order, not in order of ending.
    out.sessions.sort(key=lambda r: r.line)
    for r in out.sessions:
        out.events.setdefault(r.document, 0)
    return out


def _guarded(action: Callable[[], object], problems: list[Problem], traffic: str, lineno: int, name: str) -> bool:
    try:
        action()
    except Exception as exc:  # one session's failure must not end the replay
        problems.append(Problem(traffic, lineno, f"session {name!r}: {type(exc).__name__}: {exc}"))
        return False
    return True


def _send_recorded(session: Session, rec: dict[str, Any]) -> None:
    session.send(rec["event"], rec.get("data"))


def _quiet(label: str | None, value: Any) -> None:
    """``<log>`` output is not part of a replay report."""


# ---------------------------------------------------------------- output


def _fmt(value: float, option: str) -> str:
    if option in _COUNTS:
        return f"{int(value):,}"
    return f"{value:.4g}" if value < 1000 else f"{value:,.0f}"


def format_table(report: dict[str, Any]) -> str:
    """The report as a plain-text table per document."""
    lines = []
    for name, doc in report["documents"].items():
        lines.append(f"{name}: {doc['sessions']} sessions, {doc['events']} events")
        lines.append(
            f"  {'option':<22} {'max':>10} {'p50':>10} {'p99':>10} {'limit':>10} {'stopped':>8} {'suggested':>10}"
        )
        for option, row in doc["limits"].items():
            limit = _fmt(row["limit"], option) if row["limit"] else "off"
            lines.append(
                f"  {option:<22} {_fmt(row['max'], option):>10} {_fmt(row['p50'], option):>10} "
                f"{_fmt(row['p99'], option):>10} {limit:>10} {row['stopped']:>8} "
                f"{_fmt(row['suggested'], option):>10}"
            )
        for s in doc["stopped_sessions"]:
            lines.append(f"  stopped {s['session']} (line {s['line']}): {s['text']}")
        lines.append("")
    if not report["documents"]:
        lines.append("no sessions replayed")
    return "\n".join(lines).rstrip("\n") + "\n"


def _chart(values: list[float], limit: float, suggested: float, option: str) -> str:
    """An inline SVG histogram of one option's peaks, the limit a red line, the suggestion a dashed one.

    A limit far beyond the peaks would squeeze every bar against the left edge: it is then drawn at the
    right edge with an arrow instead.
    """
    width, height, pad = 460, 160, 34
    top = max([*values, suggested]) or 1
    beyond = bool(limit) and limit > top * 1.25
    if limit and not beyond:
        top = max(top, limit)
    nbins = 20
    counts = [0] * nbins
    for v in values:
        counts[min(nbins - 1, int(v / top * nbins))] += 1
    peak = max(counts) or 1
    bw = (width - 2 * pad) / nbins
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 2 * pad}" role="img">',
        f"<title>{html.escape(option)}</title>",
    ]
    for i, c in enumerate(counts):
        if c:
            h = c / peak * height
            parts.append(
                f'<rect x="{pad + i * bw:.1f}" y="{pad + height - h:.1f}" width="{bw - 1:.1f}" '
                f'height="{h:.1f}" fill="#4c72b0"><title>{c} sessions</title></rect>'
            )

    def xline(value: float, color: str, dash: str, label: str, y: int) -> None:
        x = pad + min(value / top, 1.0) * (width - 2 * pad)
        parts.append(
            f'<line x1="{x:.1f}" y1="{pad - 8}" x2="{x:.1f}" y2="{pad + height}" stroke="{color}" '
            f'stroke-width="2"{dash}/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{y}" font-size="11" fill="{color}" text-anchor="end">{html.escape(label)}</text>'
        )

    parts.append(f'<line x1="{pad}" y1="{pad + height}" x2="{width - pad}" y2="{pad + height}" stroke="#333"/>')
    parts.append(f'<text x="{pad}" y="{pad + height + 16}" font-size="11">0</text>')
    parts.append(
        f'<text x="{width - pad}" y="{pad + height + 16}" font-size="11" text-anchor="end">'
        f"{html.escape(_fmt(top, option))}</text>"
    )
    xline(suggested, "#2ca02c", ' stroke-dasharray="5,4"', f"suggested {_fmt(suggested, option)}", pad - 12)
    if limit:
        label = f"limit {_fmt(limit, option)}" + (" (beyond the scale) \u2192" if beyond else "")
        xline(limit, "#d62728", "", label, pad - 24)
    parts.append("</svg>")
    return "".join(parts)


def write_html(result: Replay, path: str) -> None:
    """One self-contained HTML file: per document a table, a chart per limit and the stopped sessions."""
    report = result.report()
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>orsguard replay: {e(result.traffic)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th:first-child,td:first-child"
        "{text-align:left}.stop{color:#d62728;font-weight:bold}.charts{display:flex;flex-wrap:wrap;gap:1em}"
        "figure{margin:0}figcaption{font-size:90%}code{white-space:pre-wrap}</style></head><body>",
        f"<h1>Replay of {e(result.traffic)}</h1>",
        f"<p>Margin {result.margin:g}. Limits: "
        + ", ".join(f"{e(k)}={v:g}" for k, v in report["configured_limits"].items())
        + ".</p>",
    ]
    if result.problems:
        out.append(f"<h2>Problems ({len(result.problems)})</h2><ul>")
        out.extend(f"<li><code>{e(str(p))}</code></li>" for p in result.problems)
        out.append("</ul>")
    sessions = result.documents()
    for name, doc in report["documents"].items():
        out.append(f"<h2>{e(name)}</h2><p>{doc['sessions']} sessions, {doc['events']} events</p>")
        out.append(
            "<table><tr><th>option</th><th>max</th><th>p50</th><th>p99</th><th>limit</th><th>stopped</th>"
            "<th>suggested</th></tr>"
        )
        for option, row in doc["limits"].items():
            cls = ' class="stop"' if row["stopped"] else ""
            out.append(
                f"<tr><td>{e(option)}</td><td>{_fmt(row['max'], option)}</td><td>{_fmt(row['p50'], option)}"
                f"</td><td>{_fmt(row['p99'], option)}</td><td>"
                f"{_fmt(row['limit'], option) if row['limit'] else 'off'}</td><td{cls}>{row['stopped']}</td>"
                f"<td>{_fmt(row['suggested'], option)}</td></tr>"
            )
        out.append('</table><div class="charts">')
        for option, row in doc["limits"].items():
            values = [r.peaks[option] for r in sessions[name]]
            out.append(
                f"<figure>{_chart(values, row['limit'], row['suggested'], option)}"
                f"<figcaption>{e(option)}: peaks of {len(values)} sessions</figcaption></figure>"
            )
        out.append("</div>")
        if doc["stopped_sessions"]:
            out.append(
                "<h3>Stopped sessions</h3><table><tr><th>session</th><th>line</th><th>option</th>"
                "<th>termination and loop</th></tr>"
            )
            for s in doc["stopped_sessions"]:
                out.append(
                    f"<tr><td>{e(s['session'])}</td><td>{s['line']}</td>"
                    f'<td>{e(s["termination"]["option"])}</td><td style="text-align:left">'
                    f"<code>{e(s['text'] or '')}</code></td></tr>"
                )
            out.append("</table>")
    out.append("</body></html>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
