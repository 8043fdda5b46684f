"""Run the same SCXML workloads through orsguard and two peer libraries; print ratios.

Everything runs in this one process, in one run, on one machine, so a ratio compares
like with like. The script reports; it exits 0 whether or not a target is met.

    python benchmarks/compare.py                  # full run, under a minute
    python benchmarks/compare.py --quick          # smoke run, a few seconds
    python benchmarks/compare.py --markdown results.md

benchmarks/README.md says what each workload measures and how the ratios are computed.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import math
import platform
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from types import ModuleType, SimpleNamespace
from typing import Any

DOCUMENTS = Path(__file__).resolve().parent / "documents"

#: One measured repetition. It returns the seconds spent on the measured work only, so
#: setup that is not part of the workload (loading a document, starting the session a
#: toggle run sends to) stays outside the clock.
Run = Callable[[], float]


class WorkloadError(RuntimeError):
    """A run did not end where the workload says it must, so its time means nothing."""


@dataclass(frozen=True)
class Sizes:
    """How much work one run does, and how many runs are timed."""

    repetitions: int
    counter_n: int
    toggle_events: int
    # The limits overhead compares orsguard with itself only, and a 3% difference must stand
    # out of the noise of a shared machine: many short runs, so that the best of them ran
    # uninterrupted.
    overhead_repetitions: int
    overhead_counter_n: int
    overhead_toggle_events: int


FULL = Sizes(
    repetitions=5,
    counter_n=10_000,
    toggle_events=20_000,
    overhead_repetitions=31,
    overhead_counter_n=50_000,
    overhead_toggle_events=50_000,
)
QUICK = Sizes(
    repetitions=2,
    counter_n=500,
    toggle_events=1_000,
    overhead_repetitions=3,
    overhead_counter_n=10_000,
    overhead_toggle_events=10_000,
)

#: Import name -> what to tell someone who lacks it.
LIBRARIES = {
    "orsguard": "orsguard is not importable: build and install it with `pip install -e .`",
    "statemachine": "python-statemachine 3.x is missing: `pip install 'python-statemachine>=3,<4'`",
    "transitions": "transitions is missing: `pip install transitions`",
}


def require(name: str) -> ModuleType:
    """Import a library the comparison needs, or stop with a message saying how to get it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise SystemExit(f"compare.py: {LIBRARIES[name]} ({exc})") from exc


# --- documents ---------------------------------------------------------------------


def read_document(name: str) -> str:
    """The text of a document in benchmarks/documents/."""
    return (DOCUMENTS / name).read_text(encoding="utf-8")


def with_bound(text: str, n: int) -> str:
    """A counter document counting to ``n`` instead of the bound written in the file."""
    result, count = re.subn(r'<data id="N" expr="\d+"/>', f'<data id="N" expr="{n}"/>', text)
    if count != 1:
        raise WorkloadError('a counter document must hold exactly one <data id="N" expr="..."/>')
    return result


def check_twins() -> None:
    """Fail unless counter-python.scxml is counter.scxml with only the datamodel changed.

    python-statemachine reads the Python twin; the ratio is fair only while both documents
    describe the same machine.
    """

    def shape(name: str) -> str:
        canonical = ET.canonicalize(read_document(name), strip_text=True)
        return re.sub(r' datamodel="[^"]*"', "", canonical, count=1)

    if shape("counter.scxml") != shape("counter-python.scxml"):
        raise WorkloadError("counter-python.scxml has drifted from counter.scxml; make them twins again")


# --- orsguard ------------------------------------------------------------------------


def loose_limits(og: ModuleType) -> Any:
    """All five limits on, at values no workload here comes near, so each check runs but none fires."""
    return og.Limits(
        max_microstep_count=1_000_000_000,
        max_state_entry_count=1_000_000_000,
        max_pending_events=1_000_000,
        process_event_timeout=3600.0,
        max_session_age=365 * 86400.0,
    )


def orsguard_counter(og: ModuleType, n: int, limits: Any) -> Run:
    """Count to ``n`` in one macrostep of eventless microsteps; time session creation + start."""
    document = og.load(with_bound(read_document("counter.scxml"), n))

    def run() -> float:
        started = perf_counter()
        session = og.Session(document, limits=limits)
        session.start()
        elapsed = perf_counter() - started
        if session.final != "done":
            raise WorkloadError(f"orsguard counter stopped before <final>: {session.termination}")
        return elapsed

    return run


def orsguard_toggle(og: ModuleType, document_name: str, events: int, limits: Any) -> Run:
    """Send ``events`` times ``t`` to a started session; only the sends are timed."""
    document = og.load(read_document(document_name))

    def run() -> float:
        session = og.Session(document, limits=limits)
        session.start()
        send = session.send
        started = perf_counter()
        for _ in range(events):
            send("t")
        elapsed = perf_counter() - started
        if session.atomic_configuration != {"a"} or not session.running:
            raise WorkloadError(f"orsguard toggle ended in {set(session.atomic_configuration)}")
        # A running session stays registered for event delivery; end it so runs do not pile up.
        session.cancel()
        return elapsed

    return run


# --- python-statemachine -------------------------------------------------------------


def psm_counter(n: int) -> Run:
    """The counter through python-statemachine's SCXML loader (Python datamodel, trusted).

    Instantiating the generated class enters the initial state and runs the eventless
    loop to <final>, so the constructor is the whole workload.
    """
    from statemachine.io import load

    source = with_bound(read_document("counter-python.scxml"), n)

    def run() -> float:
        # A fresh class for every run, outside the clock: python-statemachine 3.2.2 runs a
        # loaded class's <datamodel> initializer for its first instance only, so a second
        # instance has no `n`, and its failing guard loops on error.execution forever.
        chart = load(source, format="scxml", trusted=True)
        started = perf_counter()
        machine = chart()
        elapsed = perf_counter() - started
        if machine.model.n != n or not machine.is_terminated:
            raise WorkloadError(f"python-statemachine counter stopped at n={machine.model.n}")
        return elapsed

    return run


def psm_toggle(events: int) -> Run:
    """The toggle document through python-statemachine, driven by ``send("t")``."""
    from statemachine.io import load

    # toggle.scxml holds no expression, so its datamodel attribute changes nothing here.
    chart = load(read_document("toggle.scxml"), format="scxml", trusted=True)

    def run() -> float:
        machine = chart()
        send = machine.send
        started = perf_counter()
        for _ in range(events):
            send("t")
        elapsed = perf_counter() - started
        if [state.id for state in machine.configuration] != ["a"]:
            raise WorkloadError(f"python-statemachine toggle ended in {machine.configuration!r}")
        return elapsed

    return run


# --- transitions ---------------------------------------------------------------------


class _Counter:
    """The model object transitions attaches ``state`` and the triggers to."""

    def __init__(self, bound: int) -> None:
        self.n = 0
        self.bound = bound

    def below(self) -> bool:
        return self.n < self.bound

    def increment(self) -> None:
        self.n += 1


def transitions_counter(n: int) -> Run:
    """The nearest honest equivalent of the counter: transitions has no eventless transitions.

    The loop is a reflexive ``step`` trigger (exit and re-enter ``loop``, guarded by
    ``n < N``, incrementing on the way) fired by a Python ``while`` until ``done``. It is an
    external trigger per step, so it is shown for orientation and carries no target.
    """
    from transitions import Machine

    def run() -> float:
        started = perf_counter()
        model = _Counter(n)
        Machine(
            model=model,
            states=["loop", "done"],
            transitions=[
                {
                    "trigger": "step",
                    "source": "loop",
                    "dest": "loop",
                    "conditions": "below",
                    "before": "increment",
                },
                {"trigger": "step", "source": "loop", "dest": "done", "unless": "below"},
            ],
            initial="loop",
            auto_transitions=False,
        )
        trigger = model.trigger
        while model.state == "loop":
            trigger("step")
        elapsed = perf_counter() - started
        if model.n != n:
            raise WorkloadError(f"transitions counter stopped at n={model.n}")
        return elapsed

    return run


def transitions_toggle(events: int) -> Run:
    """A two-state Machine whose trigger ``t`` toggles, fired by name like ``send("t")``."""
    from transitions import Machine

    def run() -> float:
        model = SimpleNamespace()
        Machine(
            model=model,
            states=["a", "b"],
            transitions=[["t", "a", "b"], ["t", "b", "a"]],
            initial="a",
            auto_transitions=False,
        )
        trigger = model.trigger
        started = perf_counter()
        for _ in range(events):
            trigger("t")
        elapsed = perf_counter() - started
        if model.state != "a":
            raise WorkloadError(f"transitions toggle ended in {model.state!r}")
        return elapsed

    return run


# --- measuring -----------------------------------------------------------------------


def best_times(runs: dict[str, Run], repetitions: int) -> dict[str, float]:
    """The best (shortest) time of each run over ``repetitions``.

    One untimed warm-up each first. The runs take turns within every repetition, so a
    slow spell of the machine hits all of them rather than one.
    """
    for run in runs.values():
        run()
    best = dict.fromkeys(runs, math.inf)
    for _ in range(repetitions):
        for key, run in runs.items():
            # Collect now so one run does not pay for the garbage of the one before.
            gc.collect()
            best[key] = min(best[key], run())
    return best


@dataclass(frozen=True)
class Row:
    """One library on one workload."""

    workload: str
    library: str
    rate: float
    unit: str
    orsguard_rate: float | None  # what this row is compared with; None on orsguard's own rows
    target: float | None  # the ratio orsguard/this must reach; None when informational


@dataclass(frozen=True)
class Overhead:
    """Limits on (loose) against limits off, orsguard alone."""

    workload: str
    rate_off: float
    rate_on: float
    unit: str

    @property
    def percent(self) -> float:
        """How much longer the same work takes with the limits on."""
        return (self.rate_off / self.rate_on - 1.0) * 100.0


OVERHEAD_TARGET_PERCENT = 3.0


def compare(sizes: Sizes) -> tuple[list[Row], list[Overhead]]:
    """Measure everything; return the comparison rows and the limits overheads."""
    og = require("orsguard")
    require("statemachine")
    require("transitions")
    check_twins()
    loose = loose_limits(og)

    n, events = sizes.counter_n, sizes.toggle_events
    counter = best_times(
        {
            "orsguard": orsguard_counter(og, n, loose),
            "psm": psm_counter(n),
            "transitions": transitions_counter(n),
        },
        sizes.repetitions,
    )
    toggle = best_times(
        {
            "orsguard": orsguard_toggle(og, "toggle.scxml", events, loose),
            "orsguard-null": orsguard_toggle(og, "toggle-null.scxml", events, loose),
            "psm": psm_toggle(events),
            "transitions": transitions_toggle(events),
        },
        sizes.repetitions,
    )
    og_counter, og_toggle = n / counter["orsguard"], events / toggle["orsguard"]
    steps, evs = "microsteps/s", "events/s"
    rows = [
        Row("counter", "orsguard", og_counter, steps, None, None),
        Row("counter", "python-statemachine", n / counter["psm"], steps, og_counter, 50.0),
        Row(
            "counter",
            "transitions (trigger per step, not eventless)",
            n / counter["transitions"],
            steps,
            og_counter,
            None,
        ),
        Row("toggle", "orsguard", og_toggle, evs, None, None),
        Row("toggle", "orsguard, null datamodel", events / toggle["orsguard-null"], evs, None, None),
        Row("toggle", "python-statemachine", events / toggle["psm"], evs, og_toggle, 50.0),
        Row("toggle", "transitions", events / toggle["transitions"], evs, og_toggle, 2.0),
    ]

    off = og.Limits.unlimited()
    n, events = sizes.overhead_counter_n, sizes.overhead_toggle_events
    limits = best_times(
        {
            "counter on": orsguard_counter(og, n, loose),
            "counter off": orsguard_counter(og, n, off),
            "toggle on": orsguard_toggle(og, "toggle.scxml", events, loose),
            "toggle off": orsguard_toggle(og, "toggle.scxml", events, off),
        },
        sizes.overhead_repetitions,
    )
    overheads = [
        Overhead("counter", n / limits["counter off"], n / limits["counter on"], steps),
        Overhead("toggle", events / limits["toggle off"], events / limits["toggle on"], evs),
    ]
    return rows, overheads


# --- reporting -----------------------------------------------------------------------


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "source tree"


def _cpu() -> str:
    # platform.processor() is empty on most Linux systems; /proc/cpuinfo names the model.
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _rate(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}"


def render(rows: list[Row], overheads: list[Overhead], sizes: Sizes) -> str:
    """The Markdown report: setup line, comparison table, limits-overhead table."""
    machine = f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, {_cpu()}"
    versions = ", ".join(f"{name} {_version(name)}" for name in ("orsguard", "python-statemachine", "transitions"))
    lines = [
        f"{machine}; {versions}.",
        "",
        f"Best of {sizes.repetitions} interleaved repetitions; counter N = {sizes.counter_n:,}, "
        + f"toggle {sizes.toggle_events:,} events per repetition; "
        + "orsguard with all five limits on (loose values).",
        "",
        "| workload | library | rate | orsguard ÷ library | target | met |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        ratio = target = met = ""
        if row.orsguard_rate is not None:
            ratio = f"{row.orsguard_rate / row.rate:,.1f}x"
        if row.orsguard_rate is not None and row.target is not None:
            target = f">= {row.target:g}x"
            met = "yes" if row.orsguard_rate / row.rate >= row.target else "no"
        rate = _rate(row.rate, row.unit)
        lines.append(f"| {row.workload} | {row.library} | {rate} | {ratio} | {target} | {met} |")
    lines += [
        "",
        f"Limits on (loose values) vs all off, orsguard only: best of {sizes.overhead_repetitions} "
        + f"interleaved repetitions; counter N = {sizes.overhead_counter_n:,}, "
        + f"toggle {sizes.overhead_toggle_events:,} events.",
        "",
        "| workload | limits off | limits on | overhead | target | met |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for item in overheads:
        off, on = _rate(item.rate_off, item.unit), _rate(item.rate_on, item.unit)
        met = "yes" if item.percent <= OVERHEAD_TARGET_PERCENT else "no"
        target = f"<= {OVERHEAD_TARGET_PERCENT:g}%"
        lines.append(f"| {item.workload} | {off} | {on} | {item.percent:+.1f}% | {target} | {met} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workloads and few repetitions (a smoke run)")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--no-scaling", action="store_true", help="leave out the scaling table (scaling.py)")
    args = parser.parse_args(argv)

    sizes = QUICK if args.quick else FULL
    rows, overheads = compare(sizes)
    report = render(rows, overheads, sizes)
    if not args.no_scaling:
        import scaling

        report += "\nScaling (orsguard only, null datamodel; see scaling.py):\n\n"
        report += scaling.render(scaling.measure(require("orsguard"), quick=args.quick))
    sys.stdout.write(report)
    if args.markdown is not None:
        args.markdown.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
