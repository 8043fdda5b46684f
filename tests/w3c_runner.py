"""Run the W3C SCXML conformance tests (IRP) through orsguard's public API.

Shared by ``tests/test_w3c.py`` and ``scripts/conformance_table.py`` so the
suite and the published table come from one runner. The test files live in
``shared/w3c-irp`` beside the repository (override with ``ORSGUARD_W3C_DIR``).
"""

from __future__ import annotations

import csv
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import orsguard
from orsguard.cli import outcome
from orsguard.ioprocessors.basichttp import BasicHTTPProcessor

#: Seconds of (virtual) time a test may take; the longest W3C timeout is 30 s.
MAX_TIME = 200.0
#: Real seconds a BasicHTTP test may take: its timeouts are at most 30 s.
MAX_REAL_TIME = 40.0
#: How many of the last events and transitions a failure report shows.
TRACE_LENGTH = 6


def w3c_dir() -> Path:
    """Where the converted IRP lives: ``$ORSGUARD_W3C_DIR`` or ``shared/w3c-irp`` beside the repository."""
    env = os.environ.get("ORSGUARD_W3C_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "w3c-irp"


@dataclass(frozen=True)
class Case:
    """One start document of one W3C test."""

    test_id: str
    specnum: str
    conformance: str
    datamodel: str
    needs: tuple[str, ...]
    path: Path

    @property
    def name(self) -> str:
        """``test403a`` for a test with several start documents, else ``test403``."""
        return self.path.stem

    @property
    def basichttp(self) -> bool:
        return "basichttp" in self.needs


@dataclass(frozen=True)
class Outcome:
    """What a test run came to; ``detail`` says why when it did not pass."""

    passed: bool
    detail: str

    def __str__(self) -> str:
        return "pass" if self.passed else self.detail


def load_cases(root: Path | None = None) -> list[Case]:
    """The automatic tests orsguard can run: mandatory, ECMAScript-specific, BasicHTTP and 193.

    Manual tests and XPath tests (not converted) are left out.
    """
    root = root or w3c_dir()
    table = root / "tests.csv"
    if not table.is_file():
        raise FileNotFoundError(
            f"W3C conformance tests not found: {table} is missing. "
            "Put the converted IRP in shared/w3c-irp beside the repository or set ORSGUARD_W3C_DIR."
        )
    cases = []
    with table.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["manual"] == "true" or row["datamodel"] == "xpath":
                continue
            folder = root / ("null" if row["datamodel"] == "null" else "ecma")
            for start in row["start"].split():
                cases.append(
                    Case(
                        row["id"],
                        row["specnum"],
                        row["conformance"],
                        row["datamodel"],
                        tuple(row["needs"].split()),
                        folder / start,
                    )
                )
    return cases


def run_test(case: Case) -> Outcome:
    """Run one start document to its end and say whether it reached ``<final id="pass">``."""
    try:
        doc = orsguard.load(str(case.path), check_expressions=False)
        trace: deque[str] = deque(maxlen=TRACE_LENGTH)
        if case.basichttp:
            return _run_basichttp(doc, trace)
        session = orsguard.Session(doc, clock=orsguard.VirtualClock(), on_log=_quiet, on_transition=trace.append)
        _trace_events(session, trace)
        session.start()
        session.run(MAX_TIME)
        return _outcome(session, trace)
    except Exception as exc:  # any failure is a result to report, not a crash of the suite
        return Outcome(False, f"raised {type(exc).__name__}: {exc}")


def _run_basichttp(doc: orsguard.Document, trace: deque[str]) -> Outcome:
    # Real time: the events go through a real HTTP server on loopback.
    clock = orsguard.RealClock()
    with BasicHTTPProcessor(timeout=5.0) as http:
        session = orsguard.Session(doc, clock=clock, on_log=_quiet, ioprocessors=[http], on_transition=trace.append)
        _trace_events(session, trace)
        session.start()
        http.run_until(clock, clock.now() + MAX_REAL_TIME, stop=lambda: not session.running)
        outcome = _outcome(session, trace)
        session.cancel()
        return outcome


def _outcome(session: orsguard.Session, trace: deque[str]) -> Outcome:
    if session.final == "pass":
        return Outcome(True, "pass")
    # The line `orsguard run` prints: final: ID, terminated: ..., running in: ..., ended: REASON.
    detail = outcome(session)
    if session.running:
        detail += " when time was up"
    if trace:
        detail += f" after: {'; '.join(trace)}"
    return Outcome(False, detail)


def _trace_events(session: orsguard.Session, trace: deque[str]) -> None:
    """Note each event the session takes, so a failure report says which event led to ``fail``."""
    # The session looks bind_event up on its datamodel for every event it processes,
    # also when no expression reads _event.
    bind = session.dm.bind_event
    session.dm.reads_event = True

    def traced(event: orsguard.Event) -> None:
        note = f"event {event.name}"
        if event.name.startswith("error.") and isinstance(event.data, dict) and "message" in event.data:
            note += f" ({event.data['message']})"
        trace.append(note)
        bind(event)

    session.dm.bind_event = traced


def _quiet(label: str | None, value: object) -> None:
    """The tests log their outcome; the result is read from the final state instead."""
