"""What the core offers other layers: the script deadline slot, peaks, coverage and tracing."""

from __future__ import annotations

import ctypes
import threading
import time

import pytest

from orsguard import Limits, Session, Stats, VirtualClock, load
from orsguard._core import Event, Peaks
from orsguard.datamodels.null import NullDatamodel
from tests.conftest import NS, countdown, null_doc, run

# ---------------------------------------------------------------- the script deadline slot


class SlotDatamodel(NullDatamodel):
    """A null datamodel with an engine deadline: records the slot's value whenever a cond runs."""

    def __init__(self, session, expressions, slot: ctypes.c_double, fail=None) -> None:
        super().__init__(session, expressions)
        self.slot = slot
        self.seen: list[float] = []
        self.fail = fail

    def deadline_address(self) -> int:
        return ctypes.addressof(self.slot)

    def cond(self, k: int) -> bool:
        self.seen.append(self.slot.value)
        if self.fail is not None:
            raise self.fail
        return super().cond(k)


GUARDED = null_doc("""
  <state id="a"><transition event="go" cond="In('a')" target="b"/></state>
  <state id="b"><transition event="go" cond="In('b')" target="a"/></state>""")


def slot_session(limits: Limits, slot: ctypes.c_double, doc=GUARDED, fail=None) -> tuple[Session, SlotDatamodel]:
    session = Session(doc, limits=limits, clock=VirtualClock(), stats=Stats())
    session.dm = dm = SlotDatamodel(session, doc.expressions.items, slot, fail)
    return session, dm


def test_each_macrostep_sets_the_deadline_and_restores_it_afterwards():
    slot = ctypes.c_double(0.0)
    session, dm = slot_session(Limits(process_event_timeout=2.0), slot)
    session.start()
    before = time.monotonic()
    session.send("go")
    after = time.monotonic()
    assert len(dm.seen) == 1
    assert before + 2.0 <= dm.seen[0] <= after + 2.0
    assert slot.value == 0.0


def test_a_nested_macrostep_never_extends_the_deadline_it_runs_under():
    # The slot already holds an earlier deadline (an outer macrostep on the same engine).
    outer = time.monotonic() + 0.75
    slot = ctypes.c_double(outer)
    session, dm = slot_session(Limits(process_event_timeout=2.0), slot)
    session.start()
    session.send("go")
    assert dm.seen == [outer]
    assert slot.value == outer


def test_a_nested_macrostep_may_shorten_the_deadline():
    far = time.monotonic() + 3600.0
    slot = ctypes.c_double(far)
    session, dm = slot_session(Limits(process_event_timeout=2.0), slot)
    session.start()
    session.send("go")
    assert dm.seen[0] < far
    assert slot.value == far


def test_no_timeout_means_no_deadline_unless_an_outer_one_holds():
    slot = ctypes.c_double(0.0)
    session, dm = slot_session(Limits.unlimited(), slot)
    session.start()
    session.send("go")
    assert dm.seen == [0.0]
    slot.value = 123.0
    session.send("go")
    assert dm.seen == [0.0, 123.0]
    assert slot.value == 123.0


def test_the_deadline_is_restored_when_a_limit_stops_the_session():
    loop = null_doc("""
      <state id="a"><transition cond="In('a')" target="b"/></state>
      <state id="b"><transition cond="In('b')" target="a"/></state>""")
    slot = ctypes.c_double(0.0)
    session, dm = slot_session(Limits(max_microstep_count=5, process_event_timeout=2.0), slot, loop)
    session.start()
    assert session.termination.option == "max-microstep-count"
    assert dm.seen and all(v > 0 for v in dm.seen)
    assert slot.value == 0.0


def test_the_deadline_is_restored_when_an_exception_leaves_the_step_loop():
    slot = ctypes.c_double(0.0)
    session, dm = slot_session(Limits(process_event_timeout=2.0), slot)
    session.start()
    dm.fail = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        session.send("go")
    assert dm.seen[-1] > 0
    assert slot.value == 0.0


def test_cancelling_runs_the_exit_content_under_the_deadline_too():
    doc = null_doc("""<state id="a"><onexit><if cond="In('a')"><log expr="'bye'"/></if></onexit></state>""")
    slot = ctypes.c_double(0.0)
    session, dm = slot_session(Limits(process_event_timeout=2.0), slot, doc)
    session.start()
    session.cancel()
    assert len(dm.seen) == 1 and dm.seen[0] > 0
    assert slot.value == 0.0


def ecma_doc(body: str, initial: str = "a") -> object:
    return load(f'<scxml {NS} initial="{initial}">{body}</scxml>')


SPINNING = ecma_doc(
    '<state id="a"><transition event="spin" target="b"/></state>'
    '<state id="b"><onentry><script>while (true) {}</script></onentry></state>'
)


def test_the_engine_stops_a_script_at_the_deadline_the_core_writes():
    stats = Stats()
    session = Session(SPINNING, limits=Limits.unlimited().replace(process_event_timeout=0.2), stats=stats)
    session.start()
    began = time.monotonic()
    session.send("spin")
    took = time.monotonic() - began
    assert session.end_reason == "limit" and session.termination.option == "process-event-timeout"
    assert 0.2 <= session.termination.observed <= took
    assert stats.snapshot()["limit_violations"]["process-event-timeout"] == 1
    assert session.dm.deadline_address() and ctypes.c_double.from_address(session.dm.deadline_address()).value == 0


def test_an_invoked_child_cannot_extend_its_parents_deadline():
    child = (
        f'<scxml {NS} initial="c"><state id="c"><onentry><script>while (true) {{}}</script></onentry></state></scxml>'
    )
    parent = ecma_doc(f'<state id="a"><invoke><content>{child}</content></invoke></state>')
    stats = Stats()
    session = Session(
        parent,
        limits=Limits.unlimited().replace(process_event_timeout=0.2),
        child_limits=Limits.unlimited().replace(process_event_timeout=30.0),
        stats=stats,
    )
    began = time.monotonic()
    session.start()
    assert time.monotonic() - began < 5.0
    assert session.end_reason == "limit" and session.termination.option == "process-event-timeout"
    # The child's own limit was not reached: it was stopped, not timed out.
    snapshot = stats.snapshot()
    assert snapshot["limit_violations"]["process-event-timeout"] == 1
    assert snapshot["sessions_ended"]["cancelled"] == 1


def test_terminate_from_another_thread_cancels_a_running_script():
    stats = Stats()
    session = Session(SPINNING, limits=Limits.unlimited().replace(process_event_timeout=30.0), stats=stats)
    session.start()
    timer = threading.Timer(0.2, session.dm.terminate)
    timer.start()
    began = time.monotonic()
    try:
        session.send("spin")
    finally:
        timer.cancel()
    assert time.monotonic() - began < 5.0
    assert session.end_reason == "cancelled" and session.termination is None
    assert stats.snapshot()["limit_violations"]["process-event-timeout"] == 0


def test_terminate_cancels_a_running_script_with_the_timeout_off():
    session = Session(SPINNING, limits=Limits.unlimited(), stats=Stats())
    session.start()
    timer = threading.Timer(0.2, session.dm.terminate)
    timer.start()
    try:
        session.send("spin")
    finally:
        timer.cancel()
    assert session.end_reason == "cancelled" and session.termination is None


# ---------------------------------------------------------------- cancel() from another thread


def run_in_thread(target) -> threading.Thread:
    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    return worker


def wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + 30.0
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_cancel_from_another_thread_stops_a_running_script_with_the_timeout_off():
    doc = ecma_doc(
        '<state id="a"><transition event="spin" target="b"/></state>'
        '<state id="b"><onentry><log expr="\'spinning\'"/><script>while (true) {}</script>'
        "</onentry><onexit><log expr=\"'exit'\"/></onexit></state>"
    )
    spinning = threading.Event()
    logs: list[object] = []

    def on_log(label, value):
        logs.append(value)
        spinning.set()

    stats = Stats()
    box: dict[str, Session] = {}

    def work() -> None:
        # The session lives in the worker thread, with that thread's engine.
        session = box["s"] = Session(doc, limits=Limits().replace(process_event_timeout=0), stats=stats, on_log=on_log)
        session.start()
        session.send("spin")

    worker = run_in_thread(work)
    assert spinning.wait(30.0)
    session = box["s"]
    session.cancel()
    worker.join(30.0)
    if worker.is_alive():
        session.dm.terminate()  # do not leave it spinning for the rest of the suite
    assert not worker.is_alive()
    assert session.end_reason == "cancelled" and session.termination is None
    assert logs == ["spinning"]  # stopped where it was: no exit content ran
    assert stats.snapshot()["sessions_ended"]["cancelled"] == 1


def test_cancel_from_another_thread_stops_a_pure_scxml_eventless_loop():
    # Null datamodel, no hooks: the loop runs no Python code that would hand the GIL over.
    doc = null_doc('<state id="a"><transition target="b"/></state><state id="b"><transition target="a"/></state>')
    # max-state-entry-count off too: nothing else may stop it.
    session = Session(doc, limits=Limits.unlimited(), stats=Stats())
    worker = run_in_thread(session.start)
    wait_for(lambda: session.entry_count("b") > 1000, "the loop")
    assert session.running
    session.cancel()
    worker.join(30.0)
    if worker.is_alive():
        session.limits = Limits(max_microstep_count=10)  # stop it for the rest of the suite
    assert not worker.is_alive()
    assert session.end_reason == "cancelled" and session.termination is None
    assert session.stats.snapshot()["microsteps_per_macrostep"]["count"] == 1
    assert session.peaks.microsteps > 1000


def test_cancel_from_another_thread_while_the_session_is_in_a_hook():
    doc = ecma_doc(
        '<state id="a"><transition event="go" target="b"><log expr="1"/><log expr="2"/></transition>'
        '</state><state id="b"><onentry><log expr="3"/></onentry></state>'
    )
    in_hook = threading.Event()
    resume = threading.Event()
    logs: list[object] = []

    def on_log(label, value):
        logs.append(value)
        if value == 1:
            in_hook.set()
            resume.wait(30.0)

    box: dict[str, Session] = {}

    def work() -> None:
        session = box["s"] = Session(
            doc, limits=Limits().replace(process_event_timeout=0), on_log=on_log, stats=Stats()
        )
        session.start()
        session.send("go")

    worker = run_in_thread(work)
    assert in_hook.wait(30.0)
    box["s"].cancel()  # returns at once: the worker stops the session itself
    assert box["s"].running
    resume.set()
    worker.join(30.0)
    assert not worker.is_alive()
    assert box["s"].end_reason == "cancelled"
    assert logs == [1]


def test_cancel_from_the_sessions_own_thread_is_unchanged():
    doc = ecma_doc(
        '<state id="a"><transition event="go" target="b"/><onexit><log expr="\'exit a\'"/></onexit>'
        '</state><state id="b"><onentry><log expr="\'in b\'"/><log expr="\'more\'"/></onentry>'
        "<onexit><log expr=\"'exit b'\"/></onexit></state>"
    )
    logs: list[object] = []
    box: dict[str, Session] = {}

    def on_log(label, value):
        logs.append(value)
        if value == "in b":
            box["s"].cancel()  # inside its own macrostep: stops at once

    session = box["s"] = Session(doc, on_log=on_log, clock=VirtualClock(), stats=Stats())
    session.start()
    session.send("go")
    assert session.end_reason == "cancelled"
    assert logs == ["exit a", "in b"]

    # Idle: the active states are exited, their exit content run, from any thread.
    for thread in (False, True):
        logs.clear()
        idle = Session(doc, on_log=lambda label, value: logs.append(value), clock=VirtualClock(), stats=Stats())
        idle.start()
        if thread:
            worker = run_in_thread(idle.cancel)
            worker.join(30.0)
        else:
            idle.cancel()
        assert idle.end_reason == "cancelled"
        assert logs == ["exit a"]


# ---------------------------------------------------------------- peaks

ECMA_COUNTDOWN = countdown(
    '<transition event="burst"><foreach array="new Array(_event.data).fill(0)" item="x"><raise event="tick"/>'
    "</foreach></transition>",
    '<transition event="later"><send event="wake" delay="10s"/></transition>',
)


def test_peaks_are_high_water_marks_over_the_session():
    session = run(ECMA_COUNTDOWN)
    assert session.peaks.microsteps == 0  # the initial entry is not counted as a microstep
    session.send("go", 6)  # one event microstep and six eventless ones
    session.send("back")
    session.send("go", 2)
    peaks = session.peaks
    assert peaks.microsteps == 7
    assert (peaks.state_entries, peaks.state) == (10, "b")  # 1 + 6, then 1 + 2 more
    session.send("back")
    session.send("later")
    session.send("later")
    session.send("burst", 4)  # two delayed sends waiting, then four raised events
    assert session.peaks.pending == 6


def test_the_most_entered_state_is_the_first_to_reach_the_maximum():
    doc = null_doc("""<state id="a"><transition event="t" target="b"/></state>
                      <state id="b"><transition event="t" target="a"/></state>""")
    session = run(doc)
    session.send("t")
    assert (session.peaks.state_entries, session.peaks.state) == (1, "a")
    session.send("t")
    assert (session.peaks.state_entries, session.peaks.state) == (2, "a")
    session.send("t")
    assert (session.peaks.state_entries, session.peaks.state) == (2, "a")


def test_a_session_stopped_by_a_limit_reports_the_violating_value():
    session = run(ECMA_COUNTDOWN, Limits.unlimited().replace(max_microstep_count=10))
    session.send("go", 20)
    assert session.termination.observed == 11
    assert session.peaks.microsteps == 11

    session = run(ECMA_COUNTDOWN, Limits.unlimited().replace(max_state_entry_count=4))
    session.send("go", 20)
    assert session.termination.observed == 5
    assert (session.peaks.state_entries, session.peaks.state) == (5, "b")

    session = run(ECMA_COUNTDOWN, Limits.unlimited().replace(max_pending_events=3))
    session.send("burst", 10)
    assert session.termination.observed == 4
    assert session.peaks.pending == 4


def test_peak_macrostep_seconds_and_age_on_the_session_clock():
    clock = VirtualClock(start=50.0)
    session = run(ECMA_COUNTDOWN, clock=clock)
    session.send("go", 200)
    assert session.peaks.macrostep_seconds > 0
    clock.advance(10)
    assert session.peaks.age == 10
    clock.advance(2)
    session.cancel()
    clock.advance(100)
    assert session.peaks.age == 12


def test_peaks_before_start_are_zero_and_as_dict_uses_the_option_names():
    session = Session(ECMA_COUNTDOWN, clock=VirtualClock())
    assert session.peaks.as_dict() == {
        "max-microstep-count": 0,
        "max-state-entry-count": 0,
        "max-pending-events": 0,
        "process-event-timeout": 0.0,
        "max-session-age": 0.0,
        "state": None,
    }
    assert isinstance(session.peaks, Peaks)
    session.cancel()


def test_stats_observe_each_session_peaks_once_when_it_ends():
    stats = Stats()
    clock = VirtualClock()
    first = run(ECMA_COUNTDOWN, stats=stats, clock=clock)
    second = run(ECMA_COUNTDOWN, Limits.unlimited().replace(max_microstep_count=3), stats=stats, clock=clock)
    first.send("go", 30)
    snap = stats.snapshot()
    assert snap["peak_microsteps"]["count"] == 0
    second.send("go", 30)  # stopped: observed 4
    clock.advance(120)
    first.cancel()
    snap = stats.snapshot()
    micro = snap["peak_microsteps"]
    assert micro["count"] == 2 and micro["sum"] == 31 + 4
    assert sum(micro["counts"]) == 2
    assert micro["counts"][micro["buckets"].index(5)] == 1  # 4 <= 5
    assert micro["counts"][micro["buckets"].index(50)] == 1  # 31 <= 50
    entries = snap["peak_state_entries"]
    assert entries["count"] == 2 and entries["sum"] == 31 + 3  # the refused microstep entered nothing
    assert snap["peak_pending"]["count"] == 2 and snap["peak_pending"]["sum"] == 2
    age = snap["age_at_end_seconds"]
    assert age["count"] == 2 and age["sum"] == 120
    assert age["buckets"][-1] == float("inf")
    first.cancel()
    assert stats.snapshot()["peak_microsteps"]["count"] == 2


def test_peaks_read_in_on_end_are_final_for_a_timeout_stop():
    seen: list[tuple[dict, float, dict]] = []

    def on_end(session):
        seen.append((session.peaks.as_dict(), session.peaks.macrostep_seconds, session.stats.snapshot()))

    stats = Stats()
    session = Session(
        SPINNING, limits=Limits.unlimited().replace(process_event_timeout=0.05), stats=stats, on_end=on_end
    )
    session.start()
    session.send("spin")
    assert session.termination.option == "process-event-timeout"
    [(peaks, seconds, snapshot)] = seen
    assert seconds >= 0.05
    assert peaks == session.peaks.as_dict()
    # The stopping macrostep is in the histogram once, before on_end ran.
    assert snapshot == stats.snapshot()
    assert snapshot["macrostep_seconds"]["count"] == 2  # the initial macrostep and the stopped one
    assert snapshot["macrostep_seconds"]["sum"] >= 0.05


def test_peaks_read_in_on_end_are_final_for_a_microstep_stop():
    seen: list[dict] = []
    stats = Stats()
    session = Session(
        ECMA_COUNTDOWN,
        limits=Limits.unlimited().replace(max_microstep_count=10),
        stats=stats,
        clock=VirtualClock(),
        on_end=lambda s: seen.append((s.peaks.as_dict(), s.stats.snapshot())),
    )
    session.start()
    session.send("go", 20)
    [(peaks, snapshot)] = seen
    assert peaks == session.peaks.as_dict() and peaks["max-microstep-count"] == 11
    assert peaks["process-event-timeout"] > 0
    assert snapshot == stats.snapshot() and snapshot["microsteps_per_macrostep"]["count"] == 2


# ---------------------------------------------------------------- coverage and tracing

NESTED = null_doc("""
  <state id="a">
    <transition event="go" target="p"/>
    <transition event="hist" target="h"/>
  </state>
  <state id="p" initial="p1">
    <history id="h"><transition target="p2"/></history>
    <state id="p1"><transition target="p2"/></state>
    <state id="p2"><transition event="out" target="a"/><transition event="done" target="f"/></state>
  </state>
  <final id="f"/>""")


def transition(doc, label: str) -> int:
    return doc.machine.labels.index(label)


def test_coverage_counts_every_transition_taken_initial_ones_included():
    session = Session(NESTED, limits=Limits.unlimited(), clock=VirtualClock(), stats=Stats())
    session.coverage = True
    session.start()
    session.send("go")  # a -> p, p's initial p1, eventless p1 -> p2
    session.send("out")
    session.send("hist")  # history not yet recorded? it was: p2 stored, so no default
    session.send("out")
    counts = session.transition_counts()
    assert len(counts) == NESTED.machine.ntrans
    assert counts[transition(NESTED, "__scxml__ -> a")] == 1
    assert counts[transition(NESTED, "a -> p")] == 1
    assert counts[transition(NESTED, "p -> p1")] == 1
    assert counts[transition(NESTED, "p1 -> p2")] == 1
    assert counts[transition(NESTED, "a -> h")] == 1
    assert counts[transition(NESTED, "h -> p2")] == 0  # the history had a value
    assert counts[transition(NESTED, "p2 -> a")] == 2
    assert counts[transition(NESTED, "p2 -> f")] == 0
    entries = session.state_entry_counts()
    assert entries[NESTED.machine.index_of["p2"]] == 2
    assert entries[NESTED.machine.index_of["a"]] == 3
    assert entries[0] == 0


def test_a_history_default_is_a_transition_taken():
    session = Session(NESTED, limits=Limits.unlimited(), clock=VirtualClock(), stats=Stats())
    session.coverage = True
    seen: list[tuple[str, object]] = []
    session._tracer = lambda t, event: seen.append((NESTED.machine.labels[t], event))
    session.start()
    session.send("hist")
    counts = session.transition_counts()
    assert counts[transition(NESTED, "h -> p2")] == 1
    assert counts[transition(NESTED, "p -> p1")] == 0
    labels = [label for label, _ in seen]
    assert labels == ["__scxml__ -> a", "a -> h", "h -> p2"]


def test_coverage_off_counts_nothing():
    session = Session(NESTED, limits=Limits.unlimited(), clock=VirtualClock(), stats=Stats())
    session.start()
    session.send("go")
    assert session.transition_counts() == [0] * NESTED.machine.ntrans
    assert sum(session.state_entry_counts()) == 4  # a, p, p1, p2


def test_the_tracer_gets_each_transition_with_the_event_that_selected_it():
    doc = null_doc("""
      <state id="a">
        <transition event="go" target="b"><raise event="inner"/></transition>
      </state>
      <state id="b" initial="b1">
        <state id="b1"><transition event="inner" target="b2"/></state>
        <state id="b2"><transition target="c"/></state>
      </state>
      <final id="c"/>""")
    seen: list[tuple[str, Event | None]] = []
    session = Session(doc, limits=Limits.unlimited(), clock=VirtualClock(), stats=Stats())
    session._tracer = lambda t, event: seen.append((doc.machine.labels[t], event))
    session.start()
    session.send("go", {"k": 1})
    labels = [label for label, _ in seen]
    assert labels == ["__scxml__ -> a", "a -> b", "b -> b1", "b1 -> b2", "b2 -> c"]
    events = [event for _, event in seen]
    assert events[0] is None and events[2] is None and events[4] is None
    assert (events[1].name, events[1].data, events[1].type) == ("go", {"k": 1}, "external")
    assert (events[3].name, events[3].type) == ("inner", "internal")
    assert session.final == "c"


def test_on_transition_receives_labels_initial_transitions_included():
    labels: list[str] = []
    session = Session(NESTED, limits=Limits.unlimited(), clock=VirtualClock(), on_transition=labels.append)
    session.start()
    session.send("go")
    assert labels == ["__scxml__ -> a", "a -> p", "p -> p1", "p1 -> p2"]


class BadSlotDatamodel(NullDatamodel):
    def deadline_address(self) -> int:
        return -1


def test_a_datamodel_with_an_impossible_deadline_address_does_not_start_the_session():
    session = Session(GUARDED, clock=VirtualClock(), stats=Stats())
    session.dm = BadSlotDatamodel(session, GUARDED.expressions.items)
    with pytest.raises(OverflowError):
        session.start()
    assert not session.started and not session.running


def test_an_event_left_queued_by_an_interrupted_call_gets_a_fresh_deadline():
    doc = null_doc("""
      <state id="a">
        <transition event="go"><send event="next"/><send event="next"/></transition>
        <transition event="next" cond="In('a')" target="b"/>
      </state>
      <state id="b"/>""")
    slot = ctypes.c_double(0.0)
    session, dm = slot_session(
        Limits.unlimited().replace(process_event_timeout=0.2), slot, doc, fail=KeyboardInterrupt()
    )
    session.start()
    with pytest.raises(KeyboardInterrupt):
        session.send("go")  # the first "next" fails; the second stays queued
    assert session._pending_count() == 1
    time.sleep(0.25)
    dm.fail = None
    session.send("other")
    assert session.termination is None
    assert session.configuration == {"b"}


# ---------------------------------------------------------------- construction


def test_a_session_is_built_only_on_a_documents_machine() -> None:
    """The core reads the Machine from the document it is given and sizes the session's tables there."""

    class Fake:
        machine = "not a Machine"

    for bad in (None, 42, "<scxml/>", Fake()):
        with pytest.raises(
            TypeError,
            match=rf"Session needs a Document from orsguard.load\(\), "
            rf"not {type(bad).__name__}$",
        ):
            Session(bad)  # type: ignore[arg-type]
    session = Session(GUARDED, clock=VirtualClock()).start()
    assert session._machine is GUARDED.machine
    assert session.configuration == {"a"}


# ---------------------------------------------------------------- post (how transports deliver)

POSTED = load(
    f'<scxml {NS} datamodel="null"><state id="a"><transition event="go" target="b"/></state><final id="b"/></scxml>'
)


def test_a_posted_event_waits_for_the_next_clock_turn() -> None:
    clock = VirtualClock()
    session = Session(POSTED, clock=clock).start()
    session.post(Event("go"))
    assert session.configuration == {"a"}
    clock.advance(0)
    assert session.final == "b"


def test_posting_to_an_ended_session_is_ignored_and_leaves_no_timer() -> None:
    clock = VirtualClock()
    session = Session(POSTED, clock=clock).start()
    session.send("go")
    assert not session.running
    before = clock.pending_timers()
    session.post(Event("go"))
    assert clock.pending_timers() == before


def test_a_post_beyond_max_pending_events_stops_the_session_and_leaves_no_timer() -> None:
    clock = VirtualClock()
    session = Session(POSTED, clock=clock, limits=Limits(max_pending_events=2)).start()
    session.post(Event("x"))
    session.post(Event("y"))
    before = clock.pending_timers()
    session.post(Event("z"))
    assert not session.running
    assert session.termination is not None
    assert (session.termination.option, session.termination.observed) == ("max-pending-events", 3)
    # Stopping cancelled the age timer; the refused event added none.
    assert clock.pending_timers() < before
    # The two accepted events are never processed: the session ended where it stood.
    clock.advance(0)
    assert session.configuration == {"a"}
    assert session.final is None
