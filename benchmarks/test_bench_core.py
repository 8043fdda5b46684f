"""pytest-benchmark benchmarks of the orsguard core: steps, events, limits, load, start.

Run explicitly (the test suite collects ``tests/`` only)::

    python -m pytest benchmarks/ --benchmark-only

They report figures; they assert only that each workload ended where it must,
never a time. Peer libraries are compared by ``benchmarks/compare.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import scaling
from compare import loose_limits, read_document

orsguard = pytest.importorskip("orsguard")

LIMITS = {"limits-on": loose_limits(orsguard), "limits-off": orsguard.Limits.unlimited()}


@pytest.fixture(params=sorted(LIMITS))
def limits(request: pytest.FixtureRequest) -> Any:
    return LIMITS[request.param]


@pytest.fixture
def sessions() -> Iterator[list[Any]]:
    """Sessions a benchmark leaves running, cancelled afterwards so none outlives its test."""
    started: list[Any] = []
    yield started
    for session in started:
        session.cancel()


def started(sessions: list[Any], text: str) -> Any:
    """A session of ``text`` under loose limits on a virtual clock, started; ``sessions`` cancels it afterwards."""
    session = orsguard.Session(orsguard.load(text), limits=LIMITS["limits-on"], clock=orsguard.VirtualClock())
    sessions.append(session.start())
    return session


def test_counter(benchmark: Any, limits: Any) -> None:
    """counter.scxml: 10,000 eventless microsteps in one macrostep, session creation included."""
    document = orsguard.load(read_document("counter.scxml"))

    def run() -> Any:
        session = orsguard.Session(document, limits=limits)
        session.start()
        return session

    assert benchmark(run).final == "done"


@pytest.mark.parametrize("document_name", ["toggle.scxml", "toggle-null.scxml"])
def test_toggle(benchmark: Any, limits: Any, sessions: list[Any], document_name: str) -> None:
    """One ``send("t")`` to a started two-state session: one macrostep of one microstep."""
    session = orsguard.Session(orsguard.load(read_document(document_name)), limits=limits)
    session.start()
    sessions.append(session)
    benchmark(session.send, "t")
    assert session.running and len(session.atomic_configuration) == 1


def test_load_midsize(benchmark: Any) -> None:
    """orsguard.load() of routing.scxml (35 states, datamodel, script): parse, check, compile."""
    text = read_document("routing.scxml")
    document = benchmark(orsguard.load, text)
    assert document.name == "routing"


@pytest.mark.parametrize("document_name", ["routing.scxml", "toggle.scxml", "toggle-null.scxml"])
def test_session_start(benchmark: Any, sessions: list[Any], document_name: str) -> None:
    """Session(...) and start(): datamodel (a JS context for ECMAScript), script, initial macrostep."""
    document = orsguard.load(read_document(document_name))

    def start() -> None:
        # A virtual clock keeps the document's delayed sends off the real timer heap.
        session = orsguard.Session(document, clock=orsguard.VirtualClock())
        sessions.append(session.start())

    # A fixed number of rounds: every round leaves a running session (and its JS context)
    # behind until teardown, so pytest-benchmark must not pick the count.
    benchmark.pedantic(start, rounds=200)
    assert all(session.running for session in sessions)


# ---------------------------------------------------------------- scaling (see scaling.py)


@pytest.mark.parametrize("regions", [10, 100])
def test_parallel_regions_event(benchmark: Any, sessions: list[Any], regions: int) -> None:
    """One ``send("t")`` that moves every region of a ``<parallel>``: ``regions`` transitions at once."""
    session = started(sessions, scaling.parallel(regions))
    benchmark(session.send, "t")
    assert session.running and len(session.atomic_configuration) == regions


@pytest.mark.parametrize("states", [1_000, 50_000])
def test_flat_document_event(benchmark: Any, sessions: list[Any], states: int) -> None:
    """One ``send("t")`` in a flat document of ``states`` sibling states."""
    session = started(sessions, scaling.chain(states))
    benchmark(session.send, "t")
    assert session.running and len(session.atomic_configuration) == 1


@pytest.mark.parametrize("live", [1, 1_000])
def test_send_among_live_sessions(benchmark: Any, sessions: list[Any], live: int) -> None:
    """``send("t")`` to ``live`` started two-state sessions in turn (one round = one send)."""
    document = orsguard.load(scaling.chain(2))
    clock = orsguard.VirtualClock()
    sessions.extend(orsguard.Session(document, limits=LIMITS["limits-on"], clock=clock).start() for _ in range(live))
    turn = iter(range(1 << 62))

    def send() -> None:
        sessions[next(turn) % live].send("t")

    benchmark(send)
    assert all(session.running for session in sessions)
