"""SCXML 1.0 semantics through the public API, on a virtual clock.

Each test runs a small inline document and observes it the way a user would:
the configuration, ``<log>`` output (through ``on_log``), the final state and
its done data. Entry and exit order is recorded with ``<log>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import orsguard
from orsguard import Session, VirtualClock, load

HEAD = '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0"'
SCXML_PROCESSOR = "http://www.w3.org/TR/scxml/#SCXMLEventProcessor"


def scxml(body: str, **attrs: str) -> str:
    """A document around ``body``; keyword arguments become ``<scxml>`` attributes."""
    extra = "".join(f' {name}="{value}"' for name, value in attrs.items())
    return f"{HEAD}{extra}>{body}</scxml>"


def say(text: str) -> str:
    """A ``<log>`` of a string literal, for recording order."""
    return f"<log expr=\"'{text}'\"/>"


class Run:
    """A started session on a virtual clock with its ``<log>`` values collected."""

    def __init__(
        self,
        body: str,
        *,
        data: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        check_expressions: bool = True,
        **attrs: str,
    ) -> None:
        self.logs: list[Any] = []
        self.clock = VirtualClock()
        self.session = Session(
            load(scxml(body, **attrs), check_expressions=check_expressions),
            clock=self.clock,
            data=data,
            session_id=session_id,
            on_log=lambda label, value: self.logs.append(value),
        )
        self.session.start()

    def send(self, name: str, data: Any = None) -> Run:
        self.session.send(name, data)
        return self

    def take_logs(self) -> list[Any]:
        out, self.logs[:] = list(self.logs), []
        return out

    @property
    def atomic(self) -> set[str]:
        return set(self.session.atomic_configuration)


# ---------------------------------------------------------------- structure


def test_compound_state_enters_its_first_child_by_default() -> None:
    run = Run('<state id="p"><state id="a"/><state id="b"/></state><state id="q"/>')
    assert run.session.configuration == {"p", "a"}
    assert run.atomic == {"a"}


def test_initial_attribute_chooses_the_child() -> None:
    run = Run('<state id="p" initial="b"><state id="a"/><state id="b"/></state>')
    assert run.atomic == {"b"}


def test_scxml_initial_attribute_chooses_the_top_level_state() -> None:
    run = Run('<state id="a"/><state id="b"/>', initial="b")
    assert run.atomic == {"b"}


def test_parallel_enters_every_region() -> None:
    run = Run(
        '<parallel id="P"><state id="r1"><state id="a1"/><state id="x1"/></state>'
        '<state id="r2"><state id="a2"/></state><state id="r3"/></parallel>'
    )
    assert run.session.configuration == {"P", "r1", "a1", "r2", "a2", "r3"}
    assert run.atomic == {"a1", "a2", "r3"}


def test_entry_in_document_order_and_exit_in_reverse() -> None:
    def state(sid: str, inner: str = "") -> str:
        return f"<onentry>{say('enter ' + sid)}</onentry><onexit>{say('exit ' + sid)}</onexit>{inner}"

    run = Run(
        f'<parallel id="P">{state("P")}<transition event="go" target="out"/>'
        f'<state id="r1">{state("r1")}<state id="a1">{state("a1")}</state></state>'
        f'<state id="r2">{state("r2")}<state id="a2">{state("a2")}</state></state>'
        '</parallel><state id="out"/>'
    )
    assert run.take_logs() == ["enter P", "enter r1", "enter a1", "enter r2", "enter a2"]
    run.send("go")
    assert run.take_logs() == ["exit a2", "exit r2", "exit a1", "exit r1", "exit P"]
    assert run.atomic == {"out"}


def test_initial_element_content_runs_after_parent_onentry_and_before_child() -> None:
    run = Run(
        f'<state id="p"><onentry>{say("p")}</onentry>'
        f'<initial><transition target="b">{say("initial")}</transition></initial>'
        f'<state id="a"><onentry>{say("a")}</onentry></state>'
        f'<state id="b"><onentry>{say("b")}</onentry></state></state>'
    )
    assert run.logs == ["p", "initial", "b"]
    assert run.atomic == {"b"}


def test_reaching_top_level_final_ends_the_session() -> None:
    run = Run('<state id="a"><transition event="go" target="done"/></state><final id="done"/>')
    assert run.session.running and run.session.final is None
    run.send("go")
    assert run.session.final == "done"
    assert not run.session.running
    assert run.session.end_reason == "final"
    assert run.session.configuration == frozenset()
    assert run.session.send("go") is False


# ---------------------------------------------------------------- history


HISTORY_DOC = """
<state id="out"><transition event="back" target="h"/></state>
<state id="main">
  <onentry>{enter}</onentry>
  <history id="h" type="{type}"><transition target="m1">{default}</transition></history>
  <state id="m1" initial="x">
    <state id="x"><transition event="next" target="y"/></state>
    <state id="y"><transition event="sideways" target="m2"/></state>
  </state>
  <state id="m2"/>
  <transition event="leave" target="out"/>
</state>
"""


def history_run(kind: str) -> Run:
    return Run(HISTORY_DOC.format(type=kind, enter=say("enter main"), default=say("default")), initial="out")


@pytest.mark.parametrize("kind", ["shallow", "deep"])
def test_history_without_a_record_takes_its_default_transition_with_content(kind: str) -> None:
    run = history_run(kind)
    run.send("back")
    assert run.atomic == {"x"}
    assert run.take_logs() == ["enter main", "default"]


@pytest.mark.parametrize(("kind", "restored"), [("shallow", {"x"}), ("deep", {"y"})])
def test_history_restores_the_recorded_configuration(kind: str, restored: set[str]) -> None:
    run = history_run(kind)
    run.send("back").send("next").send("leave")
    assert run.atomic == {"out"}
    run.take_logs()
    run.send("back")
    assert run.atomic == restored
    assert run.take_logs() == ["enter main"], "a recorded history does not run the default content"


@pytest.mark.parametrize("kind", ["shallow", "deep"])
def test_history_records_the_last_active_child(kind: str) -> None:
    run = history_run(kind)
    run.send("back").send("next").send("sideways").send("leave").send("back")
    assert run.atomic == {"m2"}


# ---------------------------------------------------------------- transitions


INTERNAL_DOC = f"""
<state id="p" initial="a">
  <onentry>{say("enter p")}</onentry><onexit>{say("exit p")}</onexit>
  <transition event="ext" target="b"/>
  <transition event="int" type="internal" target="b"/>
  <transition event="self" type="internal" target="p"/>
  <state id="a"><onexit>{say("exit a")}</onexit></state>
  <state id="b"><onentry>{say("enter b")}</onentry></state>
</state>
"""


def test_external_transition_exits_and_reenters_its_source() -> None:
    run = Run(INTERNAL_DOC)
    run.take_logs()
    run.send("ext")
    assert run.take_logs() == ["exit a", "exit p", "enter p", "enter b"]
    assert run.session.entry_count("p") == 2


def test_internal_transition_does_not_exit_its_source() -> None:
    run = Run(INTERNAL_DOC)
    run.take_logs()
    run.send("int")
    assert run.take_logs() == ["exit a", "enter b"]
    assert run.session.entry_count("p") == 1
    assert run.atomic == {"b"}


def test_internal_transition_targeting_its_own_source_behaves_as_external() -> None:
    # Spec 3.13: type="internal" only matters when every target is a proper descendant.
    run = Run(INTERNAL_DOC)
    run.take_logs()
    run.send("self")
    assert run.take_logs() == ["exit a", "exit p", "enter p"]
    assert run.atomic == {"a"}


def test_targetless_transition_runs_content_without_exiting() -> None:
    run = Run(
        f'<state id="a"><onexit>{say("exit")}</onexit><transition event="t">{say("content")}</transition></state>'
    )
    run.send("t")
    assert run.logs == ["content"]
    assert run.atomic == {"a"}
    assert run.session.entry_count("a") == 1


def test_self_transition_exits_and_reenters() -> None:
    run = Run(
        f'<state id="a"><onentry>{say("enter")}</onentry><onexit>{say("exit")}</onexit>'
        '<transition event="t" target="a"/></state>'
    )
    run.send("t")
    assert run.logs == ["enter", "exit", "enter"]
    assert run.session.entry_count("a") == 2


def test_transition_content_runs_between_exit_and_entry() -> None:
    run = Run(
        f'<state id="a"><onexit>{say("exit a")}</onexit>'
        f'<transition event="t" target="b">{say("content")}</transition></state>'
        f'<state id="b"><onentry>{say("enter b")}</onentry></state>'
    )
    run.send("t")
    assert run.logs == ["exit a", "content", "enter b"]


def test_first_matching_transition_in_document_order_wins() -> None:
    run = Run(
        '<state id="a"><transition event="e" target="b"/><transition event="e" target="c"/></state>'
        '<state id="b"/><state id="c"/>'
    )
    run.send("e")
    assert run.atomic == {"b"}


def test_transition_of_a_descendant_is_preferred_to_an_ancestor() -> None:
    run = Run(
        '<state id="p"><transition event="e" target="viaparent"/>'
        '<state id="a"><transition event="e" target="viachild"/></state></state>'
        '<state id="viaparent"/><state id="viachild"/>'
    )
    run.send("e")
    assert run.atomic == {"viachild"}


def test_multiple_targets_enter_several_parallel_regions() -> None:
    run = Run(
        '<state id="s"><transition event="go" target="a2 b2"/></state>'
        '<parallel id="P"><state id="A"><state id="a1"/><state id="a2"/></state>'
        '<state id="B"><state id="b1"/><state id="b2"/></state>'
        '<state id="C"><state id="c1"/><state id="c2"/></state></parallel>'
    )
    run.send("go")
    assert run.atomic == {"a2", "b2", "c1"}


def test_non_conflicting_transitions_in_parallel_regions_all_run() -> None:
    run = Run(
        '<parallel id="P">'
        '<state id="A"><state id="a1"><transition event="e" target="a2"/></state><state id="a2"/></state>'
        '<state id="B"><state id="b1"><transition event="e" target="b2"/></state><state id="b2"/></state>'
        "</parallel>"
    )
    run.send("e")
    assert run.atomic == {"a2", "b2"}


def test_conflicting_transitions_the_earlier_region_in_document_order_wins() -> None:
    run = Run(
        f'<parallel id="P">'
        '<state id="A"><state id="a1"><transition event="e" target="out"/></state></state>'
        '<state id="B"><state id="b1"><transition event="e" target="b2"/></state>'
        f'<state id="b2"><onentry>{say("b2")}</onentry></state></state>'
        '</parallel><state id="out"/>'
    )
    run.send("e")
    assert run.atomic == {"out"}
    assert "b2" not in run.logs


def test_conflicting_transitions_a_later_region_is_preempted_even_when_leaving() -> None:
    run = Run(
        '<parallel id="P">'
        '<state id="A"><state id="a1"><transition event="e" target="a2"/></state><state id="a2"/></state>'
        '<state id="B"><state id="b1"><transition event="e" target="out"/></state></state>'
        '</parallel><state id="out"/>'
    )
    run.send("e")
    assert run.atomic == {"a2", "b1"}


def test_conflict_with_an_ancestor_transition_keeps_the_descendant_one() -> None:
    # removeConflictingTransitions: a1's transition is selected before P's (chosen for b1);
    # P's exit set overlaps it and P is no descendant of a1, so P's transition is dropped.
    run = Run(
        '<parallel id="P"><transition event="e" target="out"/>'
        '<state id="A"><state id="a1"><transition event="e" target="a2"/></state><state id="a2"/></state>'
        '<state id="B"><state id="b1"/></state>'
        '</parallel><state id="out"/>'
    )
    run.send("e")
    assert run.atomic == {"a2", "b1"}


# ---------------------------------------------------------------- event descriptors


@pytest.mark.parametrize(
    ("descriptor", "event", "matches"),
    [
        ("a", "a", True),
        ("a", "a.b", True),
        ("a", "a.b.c", True),
        ("a", "ab", False),
        ("a.b", "a", False),
        ("a.b", "a.bc", False),
        ("a.*", "a.b", True),
        ("a.*", "a", True),
        ("a.*", "ab", False),
        ("*", "anything.at.all", True),
        ("x a", "a.b", True),
        ("x a", "b", False),
    ],
)
def test_event_descriptor_matching(descriptor: str, event: str, matches: bool) -> None:
    run = Run(
        f'<state id="s"><transition event="{descriptor}" target="yes"/>'
        '<transition event="*" target="no"/></state><final id="yes"/><final id="no"/>'
    )
    run.send(event)
    assert run.session.final == ("yes" if matches else "no")


# ---------------------------------------------------------------- done events


def test_done_state_of_a_compound_state_carries_donedata() -> None:
    run = Run(
        '<state id="c"><state id="c1"><transition event="fin" target="cf"/></state>'
        '<final id="cf"><donedata><param name="x" expr="41 + 1"/></donedata></final>'
        '<transition event="done.state.c" target="end"><log expr="_event.data.x"/>'
        '<log expr="_event.type"/></transition></state><final id="end"/>'
    )
    assert run.session.running
    run.send("fin")
    assert run.logs == [42, "internal"]
    assert run.session.final == "end"


def test_donedata_content_becomes_the_event_data() -> None:
    run = Run(
        '<state id="c"><final id="cf"><donedata><content expr="[1, 2, 3]"/></donedata></final>'
        '<transition event="done.state.c" target="end"><log expr="_event.data"/></transition>'
        '</state><final id="end"/>'
    )
    assert run.logs == [[1, 2, 3]]


def test_done_state_of_a_parallel_state_after_every_region_is_final() -> None:
    run = Run(
        '<parallel id="P">'
        '<state id="A"><state id="a1"><transition event="fa" target="af"/></state><final id="af"/></state>'
        '<state id="B"><state id="b1"><transition event="fb" target="bf"/></state><final id="bf"/></state>'
        '<transition event="done.state.A"><log expr="_event.name"/></transition>'
        '<transition event="done.state.P" target="end"><log expr="_event.name"/></transition>'
        '</parallel><final id="end"/>'
    )
    run.send("fa")
    assert run.logs == ["done.state.A"]
    assert run.session.running and run.atomic == {"af", "b1"}
    run.send("fb")
    assert run.logs == ["done.state.A", "done.state.P"]
    assert run.session.final == "end"


def test_top_level_final_donedata_is_the_session_final_data() -> None:
    run = Run(
        '<datamodel><data id="n" expr="3"/></datamodel>'
        '<final id="f"><donedata><param name="r" expr="\'ok\'"/><param name="n" location="n"/>'
        "</donedata></final>"
    )
    assert run.session.final == "f"
    assert run.session.final_data == {"r": "ok", "n": 3}


def test_top_level_final_without_donedata_has_no_final_data() -> None:
    run = Run('<final id="f"/>')
    assert run.session.final == "f"
    assert run.session.final_data is None


# ---------------------------------------------------------------- eventless transitions and conditions


def test_eventless_transitions_loop_until_their_condition_fails() -> None:
    run = Run(
        '<datamodel><data id="n" expr="0"/></datamodel>'
        '<state id="loop"><onentry><assign location="n" expr="n + 1"/></onentry>'
        '<transition cond="n &lt; 3" target="loop"/><transition cond="n >= 3" target="done"/></state>'
        '<final id="done"/>'
    )
    assert run.session.final == "done"
    assert run.session.entry_count("loop") == 3


def test_eventless_transitions_are_taken_before_internal_events() -> None:
    run = Run(
        '<state id="a"><onentry><raise event="r"/></onentry>'
        '<transition target="b"/><transition event="r" target="c"/></state>'
        '<state id="b"><transition event="r" target="d"/></state><state id="c"/><state id="d"/>'
    )
    assert run.atomic == {"d"}


def test_condition_error_raises_error_execution_and_counts_as_false() -> None:
    run = Run(
        '<state id="a"><transition event="go" cond="noSuchVariable.field" target="bad"/>'
        '<transition event="go" target="fallback"/></state>'
        '<state id="fallback"><transition event="error.execution" target="ok">'
        '<log expr="_event.type"/></transition></state>'
        '<state id="bad"/><final id="ok"/>'
    )
    run.send("go")
    assert run.session.final == "ok"
    assert run.logs == ["platform"]


def test_condition_error_on_an_eventless_transition() -> None:
    run = Run(
        '<state id="a"><transition cond="null.x" target="bad"/>'
        '<transition event="error.execution" target="ok"/></state><state id="bad"/><final id="ok"/>'
    )
    assert run.session.final == "ok"


def test_in_predicate_tests_the_configuration() -> None:
    run = Run(
        '<parallel id="P">'
        '<state id="A"><state id="a1"><transition event="go" cond="In(\'b2\')" target="a2"/></state>'
        '<state id="a2"/></state>'
        '<state id="B"><state id="b1"><transition event="flip" target="b2"/></state><state id="b2"/></state>'
        "</parallel>"
    )
    run.send("go")
    assert run.atomic == {"a1", "b1"}
    run.send("flip").send("go")
    assert run.atomic == {"a2", "b2"}


# ---------------------------------------------------------------- raise and send


def test_raised_events_are_internal_and_processed_in_order() -> None:
    run = Run(
        '<state id="a"><onentry><raise event="r1"/><raise event="r2"/></onentry>'
        '<transition event="r1"><log expr="_event.name"/></transition>'
        '<transition event="r2"><log expr="_event.name + \'/\' + _event.type"/></transition></state>'
    )
    assert run.logs == ["r1", "r2/internal"]


def test_internal_events_are_processed_before_external_ones() -> None:
    run = Run(
        '<state id="a"><onentry><send event="ext"/><raise event="int"/></onentry>'
        '<transition event="*"><log expr="_event.name + \':\' + _event.type"/></transition></state>'
    )
    assert run.logs == ["int:internal", "ext:external"]


def test_send_to_internal_target_is_an_internal_event() -> None:
    run = Run(
        '<state id="a"><onentry><send event="ext"/><send target="#_internal" event="int"/></onentry>'
        '<transition event="*"><log expr="_event.name + \':\' + _event.type"/></transition></state>'
    )
    assert run.logs == ["int:internal", "ext:external"]


def test_delayed_send_fires_on_advance_and_not_before() -> None:
    run = Run(
        '<state id="wait"><onentry><send event="tick" delay="2s"/></onentry>'
        '<transition event="tick" target="done"/></state><final id="done"/>'
    )
    assert run.session._pending_count() == 1
    run.session.advance(1.9)
    assert run.atomic == {"wait"}
    run.session.advance(0.1)
    assert run.session.final == "done"


def test_delayexpr_is_evaluated_when_the_send_runs() -> None:
    run = Run(
        '<datamodel><data id="d" expr="\'1500ms\'"/></datamodel>'
        '<state id="wait"><onentry><send event="tick" delayexpr="d"/></onentry>'
        '<transition event="tick" target="done"/></state><final id="done"/>'
    )
    run.session.advance(1.4)
    assert run.session.running
    run.session.advance(0.1)
    assert run.session.final == "done"


def test_delayed_events_arrive_in_due_order() -> None:
    run = Run(
        '<state id="a"><onentry><send event="late" delay="3s"/><send event="early" delay="1s"/>'
        '<send event="middle" delay="2s"/></onentry>'
        '<transition event="*"><log expr="_event.name"/></transition></state>'
    )
    run.session.advance(10)
    assert run.logs == ["early", "middle", "late"]


def test_cancel_stops_a_delayed_send() -> None:
    run = Run(
        '<state id="a"><onentry><send id="t" event="tick" delay="1s"/></onentry>'
        '<transition event="stop"><cancel sendid="t"/></transition>'
        '<transition event="tick" target="fired"/></state><final id="fired"/>'
    )
    run.send("stop")
    assert run.session._pending_count() == 0
    run.session.advance(5)
    assert run.atomic == {"a"}


def test_idlocation_stores_the_send_id_for_cancel() -> None:
    run = Run(
        '<datamodel><data id="sid"/></datamodel>'
        '<state id="a"><onentry><send idlocation="sid" event="tick" delay="1s"/>'
        '<log expr="typeof sid"/></onentry>'
        '<transition event="stop"><cancel sendidexpr="sid"/></transition>'
        '<transition event="tick" target="fired"/></state><final id="fired"/>'
    )
    assert run.logs == ["string"]
    run.send("stop")
    run.session.advance(5)
    assert run.atomic == {"a"}


def test_send_id_appears_as_event_sendid() -> None:
    run = Run(
        '<state id="a"><onentry><send id="mine" event="e1"/><send event="e2"/></onentry>'
        '<transition event="e1 e2"><log expr="_event.sendid"/></transition></state>'
    )
    assert run.logs == ["mine", None]


def test_send_namelist_puts_variables_in_event_data() -> None:
    run = Run(
        '<datamodel><data id="a" expr="1"/><data id="b" expr="\'two\'"/></datamodel>'
        '<state id="s"><onentry><send event="e" namelist="a b"/></onentry>'
        '<transition event="e"><log expr="_event.data"/></transition></state>'
    )
    assert run.logs == [{"a": 1, "b": "two"}]


def test_send_params_with_expr_and_location() -> None:
    run = Run(
        '<datamodel><data id="b" expr="[5]"/></datamodel>'
        '<state id="s"><onentry><send event="e"><param name="p" expr="20 + 1"/>'
        '<param name="q" location="b"/></send></onentry>'
        '<transition event="e"><log expr="_event.data"/></transition></state>'
    )
    assert run.logs == [{"p": 21, "q": [5]}]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('<content>{"k": [1, 2]}</content>', {"k": [1, 2]}),
        ("<content expr=\"'x' + 1\"/>", "x1"),
        ("<content>  just   some text </content>", "just some text"),
    ],
)
def test_send_content_is_the_event_data(content: str, expected: Any) -> None:
    run = Run(
        f'<state id="s"><onentry><send event="e">{content}</send></onentry>'
        '<transition event="e"><log expr="_event.data"/></transition></state>'
    )
    assert run.logs == [expected]


def test_send_to_an_unknown_session_raises_error_communication() -> None:
    run = Run(
        '<state id="s"><onentry><send event="e" target="#_scxml_no-such-session"/></onentry>'
        '<transition event="error.communication" target="ok"/><transition event="*" target="bad"/></state>'
        '<final id="ok"/><final id="bad"/>'
    )
    assert run.session.final == "ok"


def test_send_to_an_unsupported_target_raises_error_execution() -> None:
    run = Run(
        '<state id="s"><onentry><send event="e" target="ftp://example.invalid/x"/></onentry>'
        '<transition event="error.execution" target="ok"/><transition event="*" target="bad"/></state>'
        '<final id="ok"/><final id="bad"/>'
    )
    assert run.session.final == "ok"


def test_send_with_an_unsupported_type_raises_error_execution() -> None:
    run = Run(
        '<state id="s"><onentry><send event="e" type="urn:no-such-processor"/></onentry>'
        '<transition event="error.execution" target="ok"/><transition event="*" target="bad"/></state>'
        '<final id="ok"/><final id="bad"/>'
    )
    assert run.session.final == "ok"


# ---------------------------------------------------------------- executable content


def test_foreach_iterates_over_a_copy_with_index() -> None:
    run = Run(
        '<datamodel><data id="arr" expr="[10, 20, 30]"/></datamodel>'
        '<state id="s"><onentry><foreach array="arr" item="x" index="idx">'
        "<log expr=\"idx + ':' + x\"/><script>arr.push(99)</script></foreach>"
        '<log expr="arr.length"/></onentry></state>'
    )
    assert run.logs == ["0:10", "1:20", "2:30", 6]


def test_foreach_item_and_index_variables_are_declared_when_missing() -> None:
    run = Run(
        '<state id="s"><onentry><foreach array="[\'p\', \'q\']" item="fresh" index="fresh_i"/>'
        '<log expr="fresh + fresh_i"/></onentry></state>'
    )
    assert run.logs == ["q1"]


@pytest.mark.parametrize(("array", "item", "index"), [("a", "x", "k"), ("arr", "i", "k"), ("arr", "x", "i")])
def test_foreach_works_whatever_the_variable_names(array: str, item: str, index: str) -> None:
    run = Run(
        f'<datamodel><data id="{array}" expr="[10, 20]"/></datamodel>'
        f'<state id="s"><onentry><foreach array="{array}" item="{item}" index="{index}">'
        f"<log expr=\"{index} + ':' + {item}\"/></foreach></onentry></state>"
    )
    assert run.logs == ["0:10", "1:20"]


def test_foreach_over_a_non_array_raises_error_execution() -> None:
    run = Run(
        '<state id="s"><onentry><foreach array="42" item="x">' + say("body") + "</foreach></onentry>"
        '<transition event="error.execution" target="ok"/></state><final id="ok"/>'
    )
    assert run.session.final == "ok"
    assert run.logs == []


@pytest.mark.parametrize(("n", "branch"), [(-5, "neg"), (0, "zero"), (7, "pos")])
def test_if_elseif_else_takes_the_first_true_branch(n: int, branch: str) -> None:
    run = Run(
        '<datamodel><data id="n" expr="1"/></datamodel><state id="s"><onentry>'
        f'<if cond="n &lt; 0">{say("neg")}<elseif cond="n == 0"/>{say("zero")}'
        f"<else/>{say('pos')}</if>{say('after')}</onentry></state>",
        data={"n": n},
    )
    assert run.logs == [branch, "after"]


def test_error_in_executable_content_abandons_the_rest_of_the_block() -> None:
    run = Run(
        f'<state id="s"><onentry>{say("before")}<script>throw new Error("boom")</script>{say("after")}'
        "</onentry><onentry>" + say("next block") + "</onentry>"
        '<transition event="error.execution" target="ok"><log expr="_event.data.message"/>'
        '</transition></state><final id="ok"/>'
    )
    assert run.logs[:2] == ["before", "next block"]
    assert "boom" in run.logs[2]
    assert run.session.final == "ok"


def test_inline_script_defines_variables_and_functions() -> None:
    run = Run(
        '<script>var greeting = "hi"; function twice(x) { return 2 * x; }</script>'
        '<state id="s"><onentry><log expr="greeting + \' \' + twice(21)"/></onentry></state>'
    )
    assert run.logs == ["hi 42"]


def test_script_src_is_relative_to_the_document_file(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "util.js").write_text("function twice(x) { return 2 * x; }\n")
    path = tmp_path / "doc.scxml"
    path.write_text(
        scxml('<script src="lib/util.js"/><state id="s"><onentry><log expr="twice(21)"/></onentry></state>')
    )
    logs: list[Any] = []
    Session(load(str(path)), clock=VirtualClock(), on_log=lambda label, value: logs.append(value)).start()
    assert logs == [42]


def test_data_expr_src_and_inline_json(tmp_path: Path) -> None:
    (tmp_path / "data.json").write_text('{"name": "from file", "n": [1, 2, 3]}')
    path = tmp_path / "doc.scxml"
    path.write_text(
        scxml(
            '<datamodel><data id="e" expr="6 * 7"/><data id="f" src="data.json"/>'
            '<data id="g">{"list": [1, 2]}</data><data id="u"/></datamodel>'
            '<state id="s"><onentry><log expr="e"/><log expr="f.name + f.n.length"/>'
            '<log expr="g.list[1]"/><log expr="u === undefined"/></onentry></state>'
        )
    )
    logs: list[Any] = []
    Session(load(path), clock=VirtualClock(), on_log=lambda label, value: logs.append(value)).start()
    assert logs == [42, "from file3", 2, True]


def test_data_expressions_see_earlier_data() -> None:
    run = Run(
        '<datamodel><data id="a" expr="2"/><data id="b" expr="a * 10"/></datamodel>'
        '<state id="s"><onentry><log expr="b"/></onentry></state>'
    )
    assert run.logs == [20]


LATE_DOC = """
<state id="s0"><onentry><log expr="later === undefined"/></onentry><transition event="go" target="s1"/></state>
<state id="s1"><datamodel><data id="later" expr="5"/></datamodel>
  <onentry><log expr="later"/></onentry></state>
"""


def test_early_binding_assigns_all_data_at_start() -> None:
    run = Run(LATE_DOC)
    assert run.logs == [False]
    run.send("go")
    assert run.logs == [False, 5]


def test_late_binding_leaves_data_of_unentered_states_undefined() -> None:
    run = Run(LATE_DOC, binding="late")
    assert run.logs == [True]
    run.send("go")
    assert run.logs == [True, 5]


def test_late_binding_assigns_data_only_on_first_entry() -> None:
    run = Run(
        '<state id="s0"><transition event="go" target="s1"/></state>'
        '<state id="s1"><datamodel><data id="v" expr="1"/></datamodel>'
        '<onentry><log expr="v"/><assign location="v" expr="v + 1"/></onentry>'
        '<transition event="again" target="s1"/></state>',
        binding="late",
    )
    run.send("go").send("again")
    assert run.logs == [1, 2]


def test_session_data_overrides_top_level_data() -> None:
    run = Run(
        '<datamodel><data id="n" expr="1"/><data id="m" expr="\'kept\'"/></datamodel>'
        '<state id="s"><onentry><log expr="n"/><log expr="m"/></onentry></state>',
        data={"n": {"from": "host"}},
    )
    assert run.logs == [{"from": "host"}, "kept"]


# ---------------------------------------------------------------- system variables


def test_sessionid_and_name_system_variables() -> None:
    run = Run(
        '<state id="s"><onentry><log expr="_sessionid"/><log expr="_name"/></onentry></state>',
        session_id="abc123",
        name="machine",
    )
    assert run.logs == ["abc123", "machine"]
    assert run.session.session_id == "abc123"


def test_ioprocessors_lists_the_scxml_processor_location() -> None:
    run = Run(
        f'<state id="s"><onentry><log expr="_ioprocessors[\'{SCXML_PROCESSOR}\'].location"/></onentry></state>',
        session_id="abc123",
    )
    assert run.logs == ["#_scxml_abc123"]


def test_external_event_from_the_host_has_type_external() -> None:
    run = Run(
        '<state id="s"><transition event="call"><log expr="_event.name"/><log expr="_event.type"/>'
        '<log expr="_event.data.ani"/><log expr="_event.origin === undefined"/></transition></state>'
    )
    run.send("call", {"ani": "5551234"})
    assert run.logs == ["call", "external", "5551234", True]


def test_event_sent_to_self_carries_origin_and_origintype() -> None:
    run = Run(
        '<state id="s"><onentry><send event="e"/></onentry>'
        '<transition event="e"><log expr="_event.origin"/><log expr="_event.origintype"/>'
        '<log expr="_event.type"/></transition></state>',
        session_id="me",
    )
    assert run.logs == ["#_scxml_me", SCXML_PROCESSOR, "external"]


def test_reply_to_event_origin_reaches_the_sender() -> None:
    run = Run(
        '<state id="s"><onentry><send event="ping"/></onentry>'
        '<transition event="ping"><send eventexpr="\'pong\'" targetexpr="_event.origin"/></transition>'
        '<transition event="pong" target="done"/></state><final id="done"/>'
    )
    assert run.session.final == "done"


def test_error_events_have_type_platform() -> None:
    run = Run(
        '<state id="s"><onentry><assign location="nowhere.deep" expr="1"/></onentry>'
        '<transition event="error.execution"><log expr="_event.type"/></transition></state>'
    )
    assert run.logs == ["platform"]


def test_event_is_undefined_before_any_event() -> None:
    run = Run('<state id="s"><onentry><log expr="typeof _event"/></onentry></state>')
    assert run.logs == ["undefined"]


@pytest.mark.parametrize("location", ["_sessionid", "_name", "_event", "_ioprocessors", "_event.name"])
def test_system_variables_are_read_only(location: str) -> None:
    run = Run(
        f'<state id="s"><onentry><raise event="first"/></onentry>'
        f'<transition event="first"><assign location="{location}" expr="\'changed\'"/>{say("not reached")}'
        '</transition><transition event="error.execution" target="ok">'
        '<log expr="[_sessionid, _name, typeof _ioprocessors, _event.name]"/></transition>'
        '</state><final id="ok"/>',
        session_id="sid",
        name="machine",
    )
    assert run.logs == [["sid", "machine", "object", "error.execution"]]
    assert run.session.final == "ok"


# ---------------------------------------------------------------- invoke


CHILD = """
<invoke id="kid" type="http://www.w3.org/TR/scxml/"{attrs}>
  {params}
  <content><scxml version="1.0" datamodel="ecmascript"{child_attrs}>{child}</scxml></content>
  {finalize}
</invoke>
"""


AUTOFORWARD = ' autoforward="true"'
NAMELIST = ' namelist="x"'


def invoking(child: str, *, params: str = "", attrs: str = "", finalize: str = "", child_attrs: str = "") -> str:
    return CHILD.format(child=child, params=params, attrs=attrs, finalize=finalize, child_attrs=child_attrs)


def test_invoke_inline_child_with_params_and_done_invoke() -> None:
    child = (
        '<datamodel><data id="greeting" expr="\'default\'"/></datamodel>'
        '<final id="kf"><donedata><param name="got" location="greeting"/></donedata></final>'
    )
    param = '<param name="greeting" expr="\'hi\'"/>'
    run = Run(
        f'<state id="p">{invoking(child, params=param)}'
        '<transition event="done.invoke.kid" target="end"><log expr="_event.data.got"/>'
        '<log expr="_event.invokeid"/></transition></state><final id="end"/>'
    )
    assert run.logs == ["hi", "kid"]
    assert run.session.final == "end"


def test_invoked_child_and_parent_exchange_events() -> None:
    child = (
        '<state id="c"><onentry><send target="#_parent" event="hello"><param name="n" expr="1"/></send>'
        '</onentry><transition event="ping" target="cf"><log expr="\'child got \' + _event.name"/>'
        '</transition></state><final id="cf"/>'
    )
    run = Run(
        f'<state id="p">{invoking(child)}'
        '<transition event="hello"><log expr="_event.invokeid + \':\' + _event.data.n"/>'
        '<send target="#_kid" event="ping"/></transition>'
        '<transition event="done.invoke.kid" target="end"/></state><final id="end"/>'
    )
    assert run.logs == ["kid:1", "child got ping"]
    assert run.session.final == "end"


def test_autoforward_copies_external_events_to_the_child() -> None:
    child = '<state id="c"><transition event="ext" target="cf"/></state><final id="cf"/>'
    forwarding = Run(
        f'<state id="p">{invoking(child, attrs=AUTOFORWARD)}'
        '<transition event="done.invoke.kid" target="end"/></state><final id="end"/>'
    )
    forwarding.send("ext")
    assert forwarding.session.final == "end"
    plain = Run(
        f'<state id="p">{invoking(child)}<transition event="done.invoke.kid" target="end"/></state><final id="end"/>'
    )
    plain.send("ext")
    assert plain.session.running


def test_finalize_runs_before_the_event_is_processed() -> None:
    child = (
        '<state id="c"><onentry><send target="#_parent" event="result"><param name="v" expr="7"/></send>'
        "</onentry></state>"
    )
    finalize = '<finalize><assign location="got" expr="_event.data.v * 6"/></finalize>'
    run = Run(
        '<datamodel><data id="got" expr="0"/></datamodel>'
        f'<state id="p">{invoking(child, finalize=finalize)}'
        '<transition event="result"><log expr="got"/></transition></state>'
    )
    assert run.logs == [42]


def test_leaving_the_invoking_state_cancels_the_child() -> None:
    child = (
        '<state id="c"><onentry><send event="timer" delay="5s"/></onentry>'
        '<transition event="timer" target="cf"><log expr="\'child timer\'"/>'
        '<send target="#_parent" event="fromchild"/></transition></state><final id="cf"/>'
    )
    run = Run(
        f'<state id="p">{invoking(child)}<transition event="leave" target="after"/></state>'
        '<state id="after"><transition event="*" target="wrong"/></state><state id="wrong"/>'
    )
    run.send("leave")
    run.session.advance(10)
    assert run.atomic == {"after"}
    assert "child timer" not in run.logs
    assert run.session._pending_count() == 0


def test_invoke_does_not_start_when_its_state_is_left_in_the_same_macrostep() -> None:
    child = f'<state id="c"><onentry>{say("child started")}</onentry></state>'
    run = Run(f'<state id="p">{invoking(child)}<transition target="q"/></state><state id="q"/>')
    assert run.atomic == {"q"}
    assert run.logs == []


# ---------------------------------------------------------------- null datamodel


def test_null_datamodel_evaluates_in_conditions() -> None:
    run = Run(
        '<parallel id="P">'
        '<state id="A"><state id="a1"><transition event="go" cond="In(\'b2\')" target="a2"/></state>'
        '<state id="a2"/></state>'
        '<state id="B"><state id="b1"><transition event="flip" target="b2"/></state><state id="b2"/></state>'
        "</parallel>",
        datamodel="null",
    )
    run.send("go")
    assert run.atomic == {"a1", "b1"}
    run.send("flip").send("go")
    assert run.atomic == {"a2", "b2"}


def test_null_datamodel_logs_string_literals() -> None:
    run = Run(f'<state id="s"><onentry>{say("hello")}</onentry></state>', datamodel="null")
    assert run.logs == ["hello"]


@pytest.mark.parametrize(
    "body",
    [
        '<state id="s"><transition cond="1 + 1 == 2" target="s"/></state>',
        '<datamodel><data id="x" expr="1"/></datamodel><state id="s"/>',
        '<state id="s"><onentry><assign location="x" expr="1"/></onentry></state>',
        '<state id="s"><onentry><log expr="1 + 2"/></onentry></state>',
        '<state id="s"><onentry><script>var x = 1;</script></onentry></state>',
    ],
)
def test_null_datamodel_rejects_other_expressions_at_load(body: str) -> None:
    with pytest.raises(orsguard.DocumentError):
        load(scxml(body, datamodel="null"))


# ---------------------------------------------------------------- robustness


def test_a_throwing_script_never_reaches_the_host() -> None:
    run = Run(
        '<state id="s"><onentry><script>null.property = 1;</script></onentry>'
        '<transition event="go"><script>throw "thrown string"</script></transition>'
        '<transition event="error.execution"><log expr="_event.name"/></transition></state>'
    )
    assert run.logs == ["error.execution"]
    run.send("go")
    assert run.logs == ["error.execution", "error.execution"]
    assert run.session.running


def test_runaway_recursion_in_a_script_is_an_execution_error() -> None:
    run = Run(
        '<state id="s"><onentry><script>function f(n) { return f(n + 1) + 1; } f(0);</script></onentry>'
        '<transition event="error.execution" target="ok"/></state><final id="ok"/>'
    )
    assert run.session.final == "ok"


def test_log_of_a_value_that_cannot_be_converted_does_not_crash() -> None:
    run = Run('<state id="s"><onentry><log expr="function () { return 1; }"/><log expr="\'after\'"/></onentry></state>')
    assert run.logs[-1] == "after"
    assert run.session.running


# ---------------------------------------------------------------- more corners


def test_internal_transition_from_a_parallel_state_still_exits_it() -> None:
    # Spec 3.13: 'internal' only keeps a compound source; a parallel source is exited.
    run = Run(
        f'<parallel id="P"><onentry>{say("enter P")}</onentry>'
        '<transition event="e" type="internal" target="a2"/>'
        '<state id="A"><state id="a1"/><state id="a2"/></state>'
        f'<state id="B"><onentry>{say("enter B")}</onentry></state></parallel>'
    )
    run.take_logs()
    run.send("e")
    assert run.take_logs() == ["enter P", "enter B"]
    assert run.atomic == {"a2", "B"}


def test_deep_history_restores_every_region_of_a_parallel_state() -> None:
    run = Run(
        '<state id="out"><transition event="back" target="h"/></state>'
        '<state id="main"><history id="h" type="deep"><transition target="P"/></history>'
        '<parallel id="P">'
        '<state id="A"><state id="a1"><transition event="e" target="a2"/></state><state id="a2"/></state>'
        '<state id="B"><state id="b1"><transition event="f" target="b2"/></state><state id="b2"/></state>'
        '</parallel><transition event="leave" target="out"/></state>',
        initial="out",
    )
    run.send("back")
    assert run.atomic == {"a1", "b1"}
    run.send("e").send("f").send("leave").send("back")
    assert run.atomic == {"a2", "b2"}


def test_shallow_history_of_a_parallel_parent_reenters_regions_by_default() -> None:
    run = Run(
        '<state id="out"><transition event="back" target="h"/></state>'
        '<state id="main"><history id="h"><transition target="P"/></history>'
        '<parallel id="P">'
        '<state id="A"><state id="a1"><transition event="e" target="a2"/></state><state id="a2"/></state>'
        '<state id="B"><state id="b1"/></state>'
        '</parallel><transition event="leave" target="out"/></state>',
        initial="out",
    )
    run.send("back").send("e").send("leave").send("back")
    assert run.atomic == {"a1", "b1"}


def test_if_condition_error_counts_as_false_and_raises_error_execution() -> None:
    run = Run(
        f'<state id="s"><onentry><if cond="null.x">{say("then")}<else/>{say("else")}</if></onentry>'
        '<transition event="error.execution"><log expr="_event.name"/></transition></state>'
    )
    assert run.logs == ["else", "error.execution"]


def test_data_initialization_error_leaves_the_variable_undefined() -> None:
    run = Run(
        '<datamodel><data id="bad" expr="null.y"/><data id="good" expr="1"/></datamodel>'
        '<state id="s"><transition event="error.execution">'
        '<log expr="[bad === undefined, good]"/></transition></state>'
    )
    assert run.logs == [[True, 1]]


def test_assign_to_an_undeclared_location_raises_error_execution() -> None:
    run = Run(
        '<state id="s"><onentry><assign location="undeclared" expr="1"/></onentry>'
        '<transition event="error.execution" target="ok"><log expr="typeof undeclared"/></transition>'
        '</state><final id="ok"/>'
    )
    assert run.logs == ["undefined"]
    assert run.session.final == "ok"


def test_assign_with_inline_content() -> None:
    run = Run(
        '<datamodel><data id="value"/></datamodel>'
        '<state id="s"><onentry><assign location="value">{"a": [1, {"b": true}]}</assign>'
        '<log expr="value.a[1].b"/></onentry></state>'
    )
    assert run.logs == [True]


def test_a_variable_named_v_can_be_set_from_content_and_session_data() -> None:
    run = Run(
        '<datamodel><data id="v" expr="1"/><data id="w"/></datamodel>'
        '<state id="s"><onentry><log expr="v"/><assign location="v">[2]</assign><log expr="v"/></onentry>'
        "</state>",
        data={"v": 5},
    )
    assert run.logs == [5, [2]]


def test_donedata_error_raises_error_execution() -> None:
    run = Run(
        '<state id="c"><final id="cf"><donedata><param name="x" expr="null.y"/></donedata></final>'
        '<transition event="error.execution"><log expr="_event.name"/></transition>'
        '<transition event="done.state.c" target="end"/></state><final id="end"/>'
    )
    assert "error.execution" in run.logs
    assert run.session.final == "end"


def test_done_state_of_a_parallel_inside_a_compound_state() -> None:
    run = Run(
        '<state id="outer"><parallel id="P">'
        '<state id="A"><final id="af"/></state><state id="B"><final id="bf"/></state>'
        '</parallel><transition event="done.state.P" target="end"/></state><final id="end"/>'
    )
    assert run.session.final == "end"


def test_on_transition_receives_each_transition_taken() -> None:
    labels: list[str] = []
    session = Session(
        load(
            scxml(
                '<state id="a"><transition event="go" target="b"/></state>'
                '<state id="b"><transition target="c"/></state><final id="c"/>'
            )
        ),
        clock=VirtualClock(),
        on_transition=labels.append,
    )
    session.start()
    session.send("go")
    assert labels == ["__scxml__ -> a", "a -> b", "b -> c"]  # the initial transition too


def test_host_cancel_ends_the_session_and_its_timers() -> None:
    run = Run(
        f'<state id="s"><onexit>{say("exit")}</onexit><onentry><send event="t" delay="1s"/></onentry>'
        '<transition event="t" target="s"/></state>'
    )
    run.session.cancel()
    assert not run.session.running
    assert run.session.end_reason == "cancelled"
    assert run.session._pending_count() == 0
    # cancelling exits the active states (their onexit runs once), as the spec's cancellation does
    assert run.logs == ["exit"]
    run.session.advance(5)
    assert run.logs == ["exit"]


def test_run_on_a_virtual_clock_jumps_from_timer_to_timer() -> None:
    run = Run(
        '<datamodel><data id="n" expr="0"/></datamodel>'
        '<state id="s"><onentry><assign location="n" expr="n + 1"/><send event="t" delay="10s"/></onentry>'
        '<transition event="t" cond="n &lt; 5" target="s"/><transition event="t" target="done"/></state>'
        '<final id="done"/>'
    )
    run.session.run(35)
    assert run.session.running and run.session.entry_count("s") == 4
    run.session.run(100)
    assert run.session.final == "done"
    assert run.clock.now() == 50


def test_invoke_src_is_relative_to_the_document_and_idlocation_gets_the_id(tmp_path: Path) -> None:
    (tmp_path / "child.scxml").write_text(
        scxml('<final id="cf"><donedata><content expr="\'child done\'"/></donedata></final>')
    )
    path = tmp_path / "parent.scxml"
    path.write_text(
        scxml(
            '<datamodel><data id="kid"/></datamodel><state id="p">'
            '<invoke src="child.scxml" idlocation="kid"/>'
            '<transition event="done.invoke"><log expr="_event.invokeid === kid"/>'
            '<log expr="_event.data"/></transition></state>'
        )
    )
    logs: list[Any] = []
    Session(load(path), clock=VirtualClock(), on_log=lambda label, value: logs.append(value)).start()
    assert logs == [True, "child done"]


def test_invoke_of_a_missing_file_raises_error_execution(tmp_path: Path) -> None:
    path = tmp_path / "parent.scxml"
    path.write_text(
        scxml(
            '<state id="p"><invoke src="nowhere.scxml"/>'
            '<transition event="error.execution" target="ok"/></state><final id="ok"/>'
        )
    )
    session = Session(load(path), clock=VirtualClock())
    session.start()
    assert session.final == "ok"


def test_invoke_namelist_sets_child_data() -> None:
    child = (
        '<datamodel><data id="x" expr="0"/></datamodel>'
        '<final id="cf"><donedata><param name="x" location="x"/></donedata></final>'
    )
    run = Run(
        '<datamodel><data id="x" expr="99"/></datamodel>'
        f'<state id="p">{invoking(child, attrs=NAMELIST)}'
        '<transition event="done.invoke.kid"><log expr="_event.data.x"/></transition></state>'
    )
    assert run.logs == [99]


def test_child_logs_reach_the_parent_on_log() -> None:
    child = f'<state id="c"><onentry>{say("from child")}</onentry></state>'
    run = Run(f'<state id="p">{invoking(child)}</state>')
    assert run.logs == ["from child"]
