"""How the core's cost grows with the document and with the number of live sessions.

Generated documents (null datamodel, so only the core is measured):

- ``parallel(P)``: one ``<parallel>`` of P regions, each toggling between two states on
  event ``t``: every event takes P transitions at once, with disjoint exit sets.
- ``chain(n)``: n sibling states, event ``t`` moves from each to the next and from the
  last back to the first; a flat document of n states.

    python benchmarks/scaling.py            # the full report
    python benchmarks/scaling.py --quick    # smaller sizes

Run by ``compare.py`` too; ``test_bench_core.py`` benchmarks the same workloads.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc
from dataclasses import dataclass
from time import process_time
from types import ModuleType
from typing import Any

from compare import loose_limits, read_document

NS = 'xmlns="http://www.w3.org/2005/07/scxml" version="1.0" datamodel="null"'


def parallel(regions: int) -> str:
    """A parallel state of ``regions`` two-state regions, all moving on every ``t``."""
    body = "".join(
        f'<state id="r{i}" initial="r{i}a"><state id="r{i}a"><transition event="t" target="r{i}b"/></state>'
        f'<state id="r{i}b"><transition event="t" target="r{i}a"/></state></state>'
        for i in range(regions)
    )
    return f'<scxml {NS} initial="p"><parallel id="p">{body}</parallel></scxml>'


def chain(n: int) -> str:
    """``n`` sibling states; ``t`` moves to the next one, the last back to the first."""
    body = "".join(f'<state id="s{i}"><transition event="t" target="s{(i + 1) % n}"/></state>' for i in range(n))
    return f'<scxml {NS} initial="s0">{body}</scxml>'


@dataclass(frozen=True)
class Result:
    """One measured figure."""

    case: str
    value: float
    unit: str
    target: str = ""

    def row(self) -> str:
        return f"| {self.case} | {self.value:,.2f} {self.unit} | {self.target} |"


def seconds_per_event(og: ModuleType, document: Any, events: int, repetitions: int) -> float:
    """Best CPU time of ``events`` sends to one started session, per event."""
    best = float("inf")
    for _ in range(repetitions):
        session = og.Session(document, limits=loose_limits(og), clock=og.VirtualClock())
        session.start()
        send = session.send
        gc.collect()
        started = process_time()
        for _ in range(events):
            send("t")
        best = min(best, (process_time() - started) / events)
        if not session.running:
            raise RuntimeError(f"the session stopped: {session.termination}")
        session.cancel()
    return best


def bytes_per_session(og: ModuleType, document: Any, sessions: int) -> float:
    """Python-allocator bytes held per started session (core tables included: they use PyMem)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    live = [og.Session(document, clock=og.VirtualClock()).start() for _ in range(sessions)]
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    for session in live:
        session.cancel()
    return (after - before) / sessions


def flat_document(og: ModuleType, n: int) -> tuple[float, float, float]:
    """Load a flat ``n``-state document, start a session, send 10 events.

    Returns (load + start bytes, CPU seconds to load, CPU seconds per event); the bytes
    are what tracemalloc sees still held (document and session), not the peak. One event
    goes untimed first: it builds the document's match table for ``t``.
    """
    text = chain(n)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = process_time()
    document = og.load(text)
    loaded = process_time() - started
    session = og.Session(document, clock=og.VirtualClock()).start()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    session.send("t")
    started = process_time()
    for _ in range(10):
        session.send("t")
    per_event = (process_time() - started) / 10
    if session.atomic_configuration != {"s11"}:
        raise RuntimeError(f"flat document ended in {set(session.atomic_configuration)}")
    session.cancel()
    return held, loaded, per_event


def send_with_live_sessions(
    og: ModuleType, live: int, events: int, repetitions: int, round_robin: bool = True, text: str | None = None
) -> float:
    """CPU seconds per ``send`` when ``live`` sessions of a toggle exist, sent to in turn or all to one.

    The toggle is ``chain(2)`` (null datamodel) unless ``text`` gives another document with event ``t``.
    """
    document = og.load(text if text is not None else chain(2))
    # one clock for all, as a host has
    clock = og.VirtualClock()
    sessions = [og.Session(document, limits=loose_limits(og), clock=clock).start() for _ in range(live)]
    best = float("inf")
    for _ in range(repetitions):
        gc.collect()
        started = process_time()
        if round_robin:
            for k in range(events):
                sessions[k % live].send("t")
        else:
            send = sessions[0].send
            for _ in range(events):
                send("t")
        best = min(best, (process_time() - started) / events)
    for session in sessions:
        if not session.running:
            raise RuntimeError(f"a session stopped: {session.termination}")
        session.cancel()
    return best


def measure(og: ModuleType, quick: bool = False) -> list[Result]:
    """Every scaling figure, in the order of the report."""
    reps = 3 if quick else 7
    out = []
    for regions in (10, 100):
        document = og.load(parallel(regions))
        us = seconds_per_event(og, document, 200 if quick else 2000, reps) * 1e6
        out.append(
            Result(f"{regions} parallel regions, all moving: one event", us, "µs", "< 20 µs" if regions == 100 else "")
        )
    for n in (10, 1000):
        per = bytes_per_session(og, og.load(chain(n)), 100 if quick else 1000)
        out.append(
            Result(f"{n}-state chain: memory per started session", per / 1024, "KiB", "< 10 KiB" if n == 1000 else "")
        )
    for n in (1000, 10_000) if quick else (10_000, 50_000, 200_000):
        try:
            held, loaded, per_event = flat_document(og, n)
        except MemoryError:
            out.append(Result(f"flat {n:,}-state document", float("nan"), "MemoryError"))
            continue
        out.append(Result(f"flat {n:,}-state document: document + one session", held / 2**20, "MiB", "linear in n"))
        out.append(Result(f"flat {n:,}-state document: load", loaded, "s"))
        out.append(Result(f"flat {n:,}-state document: one event", per_event * 1e6, "µs"))
    events = 2000 if quick else 20_000
    for name, text in (("null", None), ("ECMAScript", read_document("toggle.scxml"))):
        one = send_with_live_sessions(og, 1, events, reps, text=text)
        among = send_with_live_sessions(og, 1000, events, reps, round_robin=False, text=text)
        many = send_with_live_sessions(og, 1000, events, reps, text=text)
        out.append(Result(f"send ({name}), 1 live session", one * 1e6, "µs"))
        for label, value in (("to one of 1,000 live sessions", among), ("1,000 live sessions, round robin", many)):
            target = f"within 20% of 1 ({(value / one - 1) * 100:+.0f}%)"
            out.append(Result(f"send ({name}), {label}", value * 1e6, "µs", target))
    return out


def render(results: list[Result]) -> str:
    """The Markdown table."""
    lines = ["| case | measured | target |", "| --- | ---: | --- |"]
    lines += [r.row() for r in results]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    args = parser.parse_args(argv)
    import orsguard

    sys.stdout.write(render(measure(orsguard, quick=args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
