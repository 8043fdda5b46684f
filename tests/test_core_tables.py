"""The core's tables: descendant ranges, conflict resolution, history, and memory per session."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from orsguard import Session, VirtualClock, load
from orsguard._core import KIND_ATOMIC, KIND_COMPOUND, KIND_ROOT, Machine
from tests import conftest

NS = f'{conftest.NS} datamodel="null"'


def run(body: str, initial: str) -> Session:
    return conftest.run(conftest.null_doc(body, initial))


def padding(prefix: str, count: int) -> str:
    """``count`` idle states, to push what follows across 64-state word boundaries."""
    return "".join(f'<state id="{prefix}{i}"/>' for i in range(count))


# ---------------------------------------------------------------- conflicts between enabled transitions

PARALLEL = """
  <parallel id="p">
    <state id="a" initial="a1"><state id="a1"><transition event="leave" target="out"/></state></state>
    <state id="b" initial="b1">
      <state id="b1"><transition event="leave" target="b2"/><transition event="mine" target="b2"/></state>
      <state id="b2"/>
    </state>
    <state id="c" initial="c1">
      <state id="c1"><transition event="mine" target="c2"/><transition event="last" target="c2"/></state>
      <state id="c2"/>
    </state>
    <transition event="mine" target="out"/>
    <transition event="last" target="out"/>
  </parallel>
  <state id="out"/>"""


def test_an_earlier_transition_that_leaves_the_parallel_preempts_the_later_ones():
    session = run(PARALLEL, "p")
    session.send("leave")
    assert session.atomic_configuration == {"out"}


def test_a_descendant_source_preempts_an_ancestor_selected_before_it():
    # Region a has no "mine": the parallel's own transition is selected for it first;
    # b1's transition comes next and, its source being a descendant, replaces it; c1's
    # exit set meets neither and is taken too.
    session = run(PARALLEL, "p")
    session.send("mine")
    assert session.atomic_configuration == {"a1", "b2", "c2"}


def test_a_later_transition_that_would_leave_the_parallel_is_preempted():
    # "last": the parallel's transition is selected for a and b (once), then c1's is
    # a descendant source and replaces it.
    session = run(PARALLEL, "p")
    session.send("last")
    assert session.atomic_configuration == {"a1", "b1", "c2"}


def test_many_regions_across_word_boundaries_all_move_on_one_event():
    regions = 70  # 211 states: the regions straddle several 64-bit words
    body = "".join(
        f'<state id="r{i}" initial="r{i}a"><state id="r{i}a"><transition event="t" target="r{i}b"/>'
        f'</state><state id="r{i}b"><transition event="t" target="r{i}a"/></state></state>'
        for i in range(regions)
    )
    session = run(f'<parallel id="p">{body}</parallel>', "p")
    session.send("t")
    assert session.atomic_configuration == {f"r{i}b" for i in range(regions)}
    session.send("t")
    assert session.atomic_configuration == {f"r{i}a" for i in range(regions)}
    assert session.entry_count("r69a") == 2


# ---------------------------------------------------------------- history across words

HISTORY = f"""
  {padding("x", 60)}
  <state id="home"><transition event="go" target="deep"/><transition event="back" target="h"/>
    <transition event="back-shallow" target="hs"/></state>
  <state id="outer" initial="o1">
    <history id="h" type="deep"/>
    <history id="hs" type="shallow"/>
    <state id="o1">{padding("y", 40)}<state id="mid" initial="m1">
      <state id="m1"/>
      <parallel id="deep">
        <state id="d1">{padding("z", 30)}<state id="d1x"/></state>
        <state id="d2" initial="d2b">{padding("w", 20)}<state id="d2b"/></state>
      </parallel>
    </state></state>
    <transition event="away" target="home"/>
  </state>"""


def test_deep_history_restores_atomic_states_in_any_word():
    session = run(HISTORY, "home")
    session.send("go")
    assert session.atomic_configuration == {"z0", "d2b"}
    session.send("away")
    assert session.atomic_configuration == {"home"}
    session.send("back")
    assert session.atomic_configuration == {"z0", "d2b"}
    assert session.configuration >= {"outer", "o1", "mid", "deep", "d1", "d2"}


def test_shallow_history_records_only_the_active_child():
    session = run(HISTORY, "home")
    session.send("go")
    session.send("away")
    session.send("back-shallow")
    # o1 is re-entered by default: its first child, not the deep configuration
    assert session.atomic_configuration == {"y0"}


# ---------------------------------------------------------------- the Machine checks its input


def test_states_out_of_document_order_are_refused():
    # Each state's parent must be the state before it or one of that state's ancestors.
    kinds = [KIND_ROOT, KIND_COMPOUND, KIND_ATOMIC, KIND_ATOMIC, KIND_ATOMIC]
    ok_parents = [-1, 0, 1, 1, 0]
    bad_parents = [-1, 0, 0, 1, 0]  # state 3 under 1, but state 2 already closed 1's subtree

    def machine(parents: list[int]) -> Machine:
        n = len(parents)
        return Machine(
            [f"s{i}" for i in range(n)],
            kinds,
            parents,
            [0, 1, -1, -1, -1],
            [0, 1],
            [[1], [2]],
            [(), ()],
            [-1, -1],
            [False, False],
            [None, None],
            [()] * n,
            [()] * n,
            [None] * n,
            [()] * n,
            [None] * n,
        )

    assert machine(ok_parents).n == 5
    with pytest.raises(ValueError, match="document order"):
        machine(bad_parents)


def test_a_document_without_transitions_compiles():
    machine = Machine(
        ["root", "only"],
        [KIND_ROOT, KIND_ATOMIC],
        [-1, 0],
        [-1, -1],
        [],
        [],
        [],
        [],
        [],
        [],
        [(), ()],
        [(), ()],
        [None, None],
        [(), ()],
        [None, None],
    )
    assert (machine.n, machine.ntrans, machine.labels) == (2, 0, [])


def test_the_tables_are_read_only():
    machine = load(f'<scxml {NS} initial="a"><state id="a"/></scxml>').machine
    for name in ("ids", "index_of", "children", "targets", "events", "labels", "n", "ntrans"):
        with pytest.raises(AttributeError):
            setattr(machine, name, None)


# ---------------------------------------------------------------- memory per session


def session_bytes(states: int, sessions: int = 50) -> float:
    body = "".join(
        f'<state id="s{i}"><transition event="t" target="s{(i + 1) % states}"/></state>' for i in range(states)
    )
    document = load(f'<scxml {NS} initial="s0">{body}</scxml>')
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    live = [Session(document, clock=VirtualClock()).start() for _ in range(sessions)]
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    for session in live:
        session.cancel()
    return held / sessions


def test_a_session_holds_a_few_bytes_per_state_not_a_bitset_per_state():
    small, large = session_bytes(10), session_bytes(4000)
    # 4 bytes of entry counter and 8 bits of bitsets per state: about 8 KiB more for
    # 3,990 more states (a bitset per state would be 2 MB)
    assert large - small < 12 * 3990


def test_a_flat_document_walks_through_every_word_of_its_configuration():
    states = 300
    body = "".join(
        f'<state id="s{i}"><transition event="t" target="s{(i + 1) % states}"/>'
        f'<transition event="home" target="s0"/></state>'
        for i in range(states)
    )
    session = run(body, "s0")
    for step in range(1, 2 * states + 1):
        session.send("t")
        assert session.configuration == {f"s{step % states}"}
    session.send("t")
    session.send("home")
    assert session.configuration == {"s0"}
    session.cancel()
    assert session.configuration == frozenset()
