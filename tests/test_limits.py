"""The five ORS limits: exact semantics, the termination record, and live changes."""

from __future__ import annotations

from dataclasses import fields

import pytest

from orsguard import Limits, Session, Stats, VirtualClock, load
from orsguard._core import LIMIT_OPTIONS, Limit
from orsguard.limits import OPTION_NAMES
from orsguard.termination import Termination
from tests.conftest import NS, countdown, delayed, start

PING_PONG = load(f"""<scxml {NS} initial="a">
  <state id="a"><transition target="b"/></state>
  <state id="b"><transition target="a"/></state>
</scxml>""")

# An event takes a -> b; then n eventless b -> b steps run while n counts down.
COUNTDOWN = countdown()


# ---------------------------------------------------------------- max-microstep-count


@pytest.mark.parametrize("steps", [1, 5, 10])
def test_microsteps_up_to_the_limit_are_allowed(steps):
    session = start(COUNTDOWN, max_microstep_count=10)
    # the event's own microstep plus `steps` eventless ones, all in one macrostep
    session.send("go", steps - 1)
    assert session.running
    assert session.termination is None


def test_the_microstep_after_the_limit_is_a_violation():
    session = start(COUNTDOWN, max_microstep_count=10)
    session.send("go", 10)  # 1 + 10 microsteps
    t = session.termination
    assert not session.running
    assert (t.option, t.limit, t.observed) == ("max-microstep-count", 10, 11)
    assert t.transition == "b -> b"
    assert session.end_reason == "limit"


def test_microstep_count_restarts_with_each_external_event():
    session = start(COUNTDOWN, max_microstep_count=10)
    for _ in range(5):
        session.send("go", 9)
        session.send("back")
    assert session.running


def test_the_initial_macrostep_counts_microsteps_too():
    session = start(PING_PONG, max_microstep_count=7)
    t = session.termination
    assert t.option == "max-microstep-count"
    assert t.observed == 8
    assert len(t.trail) == 7
    assert t.loop == ("a -> b -> a", 3.5)


# ---------------------------------------------------------------- max-state-entry-count


def test_state_entries_count_over_the_session_including_the_initial_entry():
    session = start(COUNTDOWN, max_state_entry_count=3)
    assert session.entry_count("a") == 1
    session.send("go", 0)
    session.send("back")  # a entered twice
    session.send("go", 0)
    session.send("back")  # three times: allowed
    assert session.running and session.entry_count("a") == 3
    session.send("go", 0)
    session.send("back")  # the fourth entry
    t = session.termination
    assert (t.option, t.limit, t.observed, t.state) == ("max-state-entry-count", 3, 4, "a")
    assert t.transition == "b -> a"


def test_entry_limit_catches_a_loop_that_microsteps_would_allow():
    session = start(PING_PONG, max_state_entry_count=50)
    t = session.termination
    assert t.option == "max-state-entry-count"
    assert t.state == "a" and t.observed == 51


# ---------------------------------------------------------------- max-pending-events

RAISER = load(f"""<scxml {NS} initial="a">
  <datamodel><data id="k" expr="0"/></datamodel>
  <state id="a">
    <transition event="burst" target="a">
      <foreach array="new Array(_event.data).fill(0)" item="x"><raise event="tick"/></foreach>
      <send event="later" delay="10s"/>
    </transition>
    <transition event="tick"><assign location="k" expr="k + 1"/></transition>
  </state>
</scxml>""")


def test_pending_counts_internal_and_delayed_events_together():
    session = start(RAISER, max_pending_events=5)
    session.send("burst", 4)  # 4 internal + 1 delayed = 5: allowed
    assert session.running
    assert session._pending_count() == 1  # the internal ones were processed; the delayed one waits
    session.send("burst", 4)  # 1 waiting + 4 internal = 5, then the new delayed send makes 6
    t = session.termination
    assert (t.option, t.limit, t.observed) == ("max-pending-events", 5, 6)


def test_an_external_enqueue_beyond_the_limit_is_a_violation():
    session = start(RAISER, max_pending_events=1)
    session.send("burst", 0)  # no internal events, 1 delayed
    assert session.running
    session.send("tick")  # the external event makes 2 pending
    assert session.termination.option == "max-pending-events"
    assert session.termination.observed == 2


# ---------------------------------------------------------------- process-event-timeout

SPIN = load(f"""<scxml {NS} initial="a">
  <script>function busy() {{ var i = 0; while (true) {{ i++; }} }}</script>
  <state id="a">
    <transition event="loop" target="b"/>
    <transition event="call" cond="busy()" target="b"/>
  </state>
  <state id="b"><onentry><script>while (true) {{}}</script></onentry></state>
</scxml>""")


@pytest.mark.parametrize("event", ["loop", "call"])
def test_a_runaway_script_is_interrupted_at_the_timeout(event):
    session = start(SPIN, process_event_timeout=0.1)
    session.send(event)
    t = session.termination
    assert t is not None and t.option == "process-event-timeout"
    assert t.limit == 0.1
    assert t.observed >= 0.1
    assert not session.running


def test_the_timeout_budget_is_per_macrostep():
    session = start(COUNTDOWN, process_event_timeout=5.0)
    for _ in range(3):
        session.send("go", 100)
        session.send("back")
    assert session.running


# ---------------------------------------------------------------- loops that take no microstep, or many macrosteps

# A typo in an eventless cond: error.execution is raised, matches nothing, and the
# eventless transitions are tried again, for ever, without a single microstep.
ERROR_SPIN = f"""<scxml {NS} initial="a">
  <state id="a"><transition cond="undefinedVar" target="b"/></state>
  <state id="b"/>
</scxml>"""


def test_an_error_spinning_eventless_loop_counts_its_events_as_microsteps():
    stats = Stats()
    session = Session(
        load(ERROR_SPIN), clock=VirtualClock(), stats=stats, limits=Limits.unlimited().replace(max_microstep_count=50)
    )
    session.start()
    t = session.termination
    assert (t.option, t.limit, t.observed) == ("max-microstep-count", 50, 51)
    assert t.transition is None
    snap = stats.snapshot()
    assert snap["microsteps"] == 0  # no transition was taken
    assert snap["events"]["internal"] == 51
    assert session.peaks.microsteps == 51


def test_the_default_limits_stop_an_error_spinning_loop():
    session = Session(load(ERROR_SPIN), clock=VirtualClock(), stats=Stats())
    session.start()
    assert session.termination.option == "max-microstep-count"
    assert session.termination.observed == Limits().max_microstep_count + 1


def test_without_a_microstep_limit_the_timeout_stops_an_error_spinning_loop():
    session = Session(
        load(ERROR_SPIN),
        clock=VirtualClock(),
        stats=Stats(),
        limits=Limits.unlimited().replace(process_event_timeout=0.2),
    )
    session.start()
    t = session.termination
    assert (t.option, t.limit) == ("process-event-timeout", 0.2)
    assert t.observed > 0.2


RAISE_LOOP = load(f"""<scxml {NS} initial="a">
  <state id="a">
    <transition event="go"><raise event="again"/></transition>
    <transition event="again"><raise event="again"/></transition>
  </state>
</scxml>""")


def test_a_raise_loop_is_stopped_by_the_microstep_limit():
    session = start(RAISE_LOOP, max_microstep_count=20)
    session.send("go")
    t = session.termination
    assert (t.option, t.observed, t.transition) == ("max-microstep-count", 21, "a -> (targetless)")


def test_a_raise_loop_without_a_microstep_limit_is_stopped_by_the_timeout():
    session = start(RAISE_LOOP, process_event_timeout=0.2)
    session.send("go")
    assert session.termination.option == "process-event-timeout"
    assert session.termination.observed > 0.2


# Each event is its own macrostep, so neither the microstep limit nor (targetless)
# the entry limit counts it; the session keeps its caller busy.
SELF_SEND = load(f"""<scxml {NS} initial="a">
  <state id="a">
    <transition event="go"><send event="again"/></transition>
    <transition event="again"><send event="again"/></transition>
    <transition event="enter" target="b"/>
  </state>
  <state id="b"><onentry><send event="enter"/></onentry><transition event="enter" target="b"/></state>
</scxml>""")


def test_zero_delay_sends_to_itself_run_under_the_deadline_of_the_event_that_began_them():
    session = start(SELF_SEND, max_microstep_count=5, process_event_timeout=0.2)
    session.send("go")
    t = session.termination
    assert (t.option, t.limit) == ("process-event-timeout", 0.2)
    assert t.observed > 0.2
    assert t.trail[-1] == "a -> (targetless)"


def test_zero_delay_sends_that_reenter_a_state_are_stopped_by_the_entry_limit():
    session = start(SELF_SEND, max_state_entry_count=100)
    session.send("enter")
    t = session.termination
    assert (t.option, t.observed, t.state) == ("max-state-entry-count", 101, "b")


CHAIN = load(f"""<scxml {NS} initial="a">
  <datamodel><data id="n" expr="0"/></datamodel>
  <state id="a">
    <transition event="step" cond="n &lt; 30" target="b"><assign location="n" expr="n + 1"/></transition>
  </state>
  <state id="b"><transition target="c"/></state>
  <state id="c"><onentry><send event="step"/></onentry><transition target="a"/></state>
</scxml>""")


def test_each_event_sent_to_itself_is_still_a_macrostep_of_its_own():
    # three microsteps per event; thirty chained events stay within max-microstep-count=5
    session = start(CHAIN, max_microstep_count=5, process_event_timeout=60)
    session.send("step")
    assert session.running and session.termination is None
    assert session.entry_count("a") == 31
    assert session.peaks.microsteps == 3


# ---------------------------------------------------------------- max-session-age

WAITER = delayed("100s")


def test_session_age_fires_while_the_session_is_idle():
    clock = VirtualClock()
    session = Session(WAITER, limits=Limits.unlimited().replace(max_session_age=30), clock=clock, stats=Stats())
    session.start()
    session.advance(29.5)
    assert session.running
    session.advance(1)
    t = session.termination
    assert t.option == "max-session-age"
    assert t.observed == pytest.approx(30.0)
    # the delayed send died with the session
    assert clock.next_due() is None
    assert session.configuration == frozenset({"a"})


def test_session_age_is_measured_from_the_start_on_the_session_clock():
    clock = VirtualClock(start=1000.0)
    session = Session(WAITER, limits=Limits.unlimited().replace(max_session_age=200), clock=clock, stats=Stats())
    session.start()
    session.run(150)
    assert session.running and session.configuration == frozenset({"b"})


# ---------------------------------------------------------------- what a violation does

EXIT_LOG = load(f"""<scxml {NS} initial="a">
  <state id="a">
    <onentry><send event="never" delay="5s"/></onentry>
    <onexit><log label="exit" expr="'a'"/></onexit>
    <transition target="b"/>
  </state>
  <state id="b">
    <onexit><log label="exit" expr="'b'"/></onexit>
    <transition target="a"/>
  </state>
</scxml>""")


def test_a_violation_stops_all_executable_content_and_cancels_delayed_sends():
    logs: list[tuple[str | None, object]] = []
    clock = VirtualClock()
    stats = Stats()
    session = Session(
        EXIT_LOG,
        limits=Limits.unlimited().replace(max_microstep_count=4),
        clock=clock,
        stats=stats,
        on_log=lambda label, value: logs.append((label, value)),
    )
    session.start()
    assert session.termination.option == "max-microstep-count"
    # four microsteps ran their onexit; the fifth (the violation) ran nothing
    assert [v for _, v in logs] == ["a", "b", "a", "b"]
    assert clock.next_due() is None
    assert session._pending_count() == 0
    assert session.send("anything") is False
    snap = stats.snapshot()
    assert snap["microsteps"] == 4  # taken; the refused fifth is not counted
    assert snap["limit_violations"]["max-microstep-count"] == 1
    assert snap["sessions_ended"]["limit"] == 1
    assert snap["sessions_active"] == 0


def test_termination_reads_as_one_line_with_the_loop():
    session = start(PING_PONG, max_microstep_count=6)
    text = str(session.termination)
    assert "\n" not in text
    assert text.startswith("max-microstep-count=6 exceeded (observed 7)")
    assert "a -> b" in text
    assert "loop: a -> b -> a (repeated 3 times" in text
    assert session.termination.as_dict()["trail"] == ["a -> b", "b -> a"] * 3


def test_on_end_is_called_once_with_the_terminated_session():
    ended = []
    session = Session(
        PING_PONG,
        limits=Limits(max_microstep_count=3),
        clock=VirtualClock(),
        stats=Stats(),
        on_end=ended.append,
    )
    session.start()
    assert ended == [session]


# ---------------------------------------------------------------- limits as values, and live changes


def test_zero_switches_every_limit_off():
    session = start(COUNTDOWN)
    session.send("go", 20000)
    assert session.running


def test_new_limits_apply_at_the_next_check():
    session = start(COUNTDOWN, max_microstep_count=100)
    session.send("go", 50)
    assert session.running
    session.send("back")
    session.limits = Limits.unlimited().replace(max_microstep_count=10)
    session.send("go", 50)
    assert session.termination.limit == 10


def test_lowering_max_session_age_reschedules_the_timer():
    clock = VirtualClock()
    session = Session(WAITER, limits=Limits.unlimited().replace(max_session_age=90), clock=clock, stats=Stats())
    session.start()
    clock.advance(10)
    session.limits = session.limits.replace(max_session_age=20)
    clock.advance(10.5)
    assert session.termination.option == "max-session-age"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_microstep_count": -1}, "max-microstep-count must be >= 0"),
        ({"max_pending_events": 1.5}, "max-pending-events must be a whole number"),
        ({"process_event_timeout": "5"}, "process-event-timeout must be a number"),
        ({"max_session_age": float("nan")}, "max-session-age must be >= 0"),
    ],
)
def test_limits_reject_bad_values(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Limits(**kwargs)


def test_option_names_follow_the_cores_limits_in_ors_order():
    assert list(OPTION_NAMES.items()) == [
        ("max_microstep_count", "max-microstep-count"),
        ("max_state_entry_count", "max-state-entry-count"),
        ("max_pending_events", "max-pending-events"),
        ("process_event_timeout", "process-event-timeout"),
        ("max_session_age", "max-session-age"),
    ]
    assert tuple(OPTION_NAMES.values()) == LIMIT_OPTIONS
    assert [LIMIT_OPTIONS[limit] for limit in Limit] == list(LIMIT_OPTIONS)
    # Limits has exactly one field per option, in the same order
    assert [f.name for f in fields(Limits)] == list(OPTION_NAMES)


def test_a_violation_is_reported_as_a_plain_termination():
    session = start(PING_PONG, max_microstep_count=2)
    termination = session.termination
    assert type(termination) is Termination
    assert termination.as_dict() == {
        "option": "max-microstep-count",
        "limit": 2.0,
        "observed": 3,
        "state": None,
        "transition": "a -> b",
        "trail": ["a -> b", "b -> a"],
    }
    assert session.peaks.as_dict()["max-microstep-count"] == 3


def test_a_session_that_ends_without_a_violation_has_no_termination():
    ended = start(load(f'<scxml {NS} initial="f"><final id="f"/></scxml>'))
    assert ended.end_reason == "final" and ended.termination is None


def test_limits_by_option_uses_ors_names():
    assert Limits(max_microstep_count=7).by_option()["max-microstep-count"] == 7
    assert set(Limits().by_option()) == {
        "max-microstep-count",
        "max-state-entry-count",
        "max-pending-events",
        "process-event-timeout",
        "max-session-age",
    }


# ---------------------------------------------------------------- invoked sessions

PARENT = load(f"""<scxml {NS} initial="s">
  <state id="s">
    <invoke id="child" type="scxml">
      <content>
        <scxml {NS} initial="x">
          <state id="x"><transition event="spin" target="y"/></state>
          <state id="y"><transition target="z"/></state>
          <state id="z"><transition target="y"/></state>
        </scxml>
      </content>
    </invoke>
    <transition event="go"><send target="#_child" event="spin"/></transition>
    <transition event="error.limit" target="stopped">
      <log label="report" expr="_event.data.option + '@' + _event.invokeid"/>
    </transition>
  </state>
  <state id="stopped"/>
</scxml>""")


def test_a_child_inherits_its_parents_limits_and_its_violation_is_reported():
    logs: list[object] = []
    session = Session(
        PARENT,
        limits=Limits.unlimited().replace(max_microstep_count=20),
        clock=VirtualClock(),
        stats=Stats(),
        on_log=lambda label, value: logs.append(value),
    )
    session.start()
    child = session.child("child")
    assert child.limits.max_microstep_count == 20
    session.send("go")
    assert child.termination.option == "max-microstep-count"
    assert session.configuration == frozenset({"stopped"})
    assert logs == ["max-microstep-count@child"]


def test_child_limits_replace_the_inherited_ones():
    session = Session(
        PARENT,
        limits=Limits.unlimited(),
        clock=VirtualClock(),
        stats=Stats(),
        child_limits=Limits.unlimited().replace(max_state_entry_count=5),
    )
    session.start()
    child = session.child("child")
    session.send("go")
    assert child.termination.option == "max-state-entry-count"
    assert session.configuration == frozenset({"stopped"})
    assert session.running and session.termination is None


def test_a_failing_host_hook_does_not_break_the_session(caplog):
    def boom(*args):
        raise RuntimeError("hook failed")

    session = Session(
        COUNTDOWN,
        limits=Limits(max_microstep_count=5),
        clock=VirtualClock(),
        stats=Stats(),
        on_transition=boom,
        on_end=boom,
    )
    session.start()
    session.send("go", 2)
    assert session.configuration == frozenset({"b"})
    session.send("go", 0)
    session.send("back")
    session.send("go", 10)
    assert session.termination.option == "max-microstep-count"
    assert "the on_transition hook failed" in caplog.text
    assert "the on_end hook failed" in caplog.text


def test_a_runaway_built_in_call_is_interrupted_too():
    # No loop and no user function: a catastrophically backtracking RegExp.
    doc = load(f"""<scxml {NS} initial="a">
      <datamodel><data id="s" expr="'a'.repeat(40) + '!'"/></datamodel>
      <state id="a"><transition event="check" cond="/^(a+)+$/.test(s)" target="b"/></state>
      <state id="b"/>
    </scxml>""")
    session = start(doc, process_event_timeout=0.1)
    session.send("check")
    assert session.termination is not None
    assert session.termination.option == "process-event-timeout"
