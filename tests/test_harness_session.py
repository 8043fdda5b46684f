"""The session API tests build on: error records, strict checks, the outbox, the data view, tracing."""

from __future__ import annotations

from typing import Any

import pytest

import orsguard
from orsguard.records import MAX_ERRORS, StrictError, TransitionTaken

SCXML = '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" {attrs}>{body}</scxml>'


def doc(body: str, attrs: str = 'initial="s"') -> orsguard.Document:
    return orsguard.load(SCXML.format(attrs=attrs, body=body))


def start(document: orsguard.Document, **kwargs: Any) -> orsguard.Session:
    return orsguard.Session(document, clock=orsguard.VirtualClock(), **kwargs).start()


class FakeProcessor:
    """An event I/O processor that keeps what it was asked to send."""

    type_uri = "http://example.org/fake"
    aliases = ("fake",)

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def location(self, session: Any) -> str:
        return "fake:" + session.session_id

    def send(self, session: Any, event: Any, target: str) -> None:
        self.sent.append((event.name, target))


# ---------------------------------------------------------------- error.execution data


def test_error_execution_data_names_element_line_column_and_reason() -> None:
    document = doc("""
<datamodel><data id="seen" expr="null"/></datamodel>
<state id="s">
  <onentry>
    <assign location="nowhere.x" expr="1"/>
  </onentry>
  <transition event="error.execution" target="t">
    <assign location="seen" expr="_event.data"/>
  </transition>
</state>
<state id="t"/>""")
    session = start(document)
    seen = session.data["seen"]
    assert seen["tagname"] == "assign"
    assert (seen["line"], seen["column"]) == (5, 5)
    assert "nowhere" in seen["reason"] and seen["message"] == seen["reason"]
    assert session.configuration == {"t"}


def test_a_failing_transition_cond_is_located_at_its_transition() -> None:
    document = doc("""
<state id="s">
  <transition event="go"
              cond="_event.data.customer.tier === 'gold'" target="gold"/>
  <transition event="go" target="other"/>
</state>
<state id="gold"/><state id="other"/>""")
    session = start(document)
    session.send("go", {})
    assert session.configuration == {"other"}
    [error] = session.errors
    assert (error.event, error.tagname, error.line, error.column) == ("error.execution", "transition", 3, 3)
    assert error.transition == "s -> gold"
    assert "tier" in error.reason
    assert "<string>:3:3 <transition> (cond of s -> gold)" in str(error)


def test_the_innermost_element_is_named() -> None:
    document = doc("""
<state id="s">
  <onentry>
    <if cond="true">
      <send event="x">
        <param name="p" expr="missing.field"/>
      </send>
    </if>
  </onentry>
  <onentry>
    <if cond="undefinedName">
      <log expr="1"/>
    </if>
  </onentry>
</state>""")
    session = start(document)
    assert [(e.tagname, e.line) for e in session.errors] == [("param", 6), ("if", 11)]


def test_a_failing_param_is_named_and_the_params_before_it_ran_once() -> None:
    document = doc("""
<datamodel><data id="n" expr="0"/></datamodel>
<state id="s">
  <onentry>
    <send event="x">
      <param name="a" expr="++n"/>
      <param name="b" expr="missing.field"/>
      <param name="c" expr="++n"/>
    </send>
  </onentry>
</state>""")
    session = start(document)
    assert [(e.tagname, e.line) for e in session.errors] == [("param", 7)]
    assert session.data["n"] == 1


def test_errors_of_invoked_sessions_carry_the_invoke_id() -> None:
    document = doc("""
<state id="s">
  <invoke id="child"><content>
    <scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" initial="c">
      <state id="c"><onentry><script>boom()</script></onentry></state>
    </scxml>
  </content></invoke>
</state>""")
    session = start(document, strict=True)
    [error] = session.errors
    assert (error.tagname, error.invokeid, error.line, error.column) == ("script", "child", 5, 30)
    with pytest.raises(StrictError, match="in invoked session 'child'"):
        session.check()


def test_an_error_loop_keeps_only_the_first_records() -> None:
    document = doc('<state id="s"><transition cond="nope()" target="s"/></state>')
    session = start(document, limits=orsguard.Limits(max_microstep_count=5000), strict=True)
    assert len(session.errors) == MAX_ERRORS
    assert session._errors_dropped > 0
    with pytest.raises(StrictError, match="more error events"):
        session.check()


# ---------------------------------------------------------------- strict checks


BROKEN = (
    '<state id="s"><transition event="go" target="t"><assign location="x" expr="1"/></transition></state>'
    '<state id="t"/>'
)


def test_strict_check_fails_on_an_unexpected_error_once() -> None:
    session = start(doc(BROKEN), strict=True)
    session.send("go")
    with pytest.raises(StrictError, match=r"unexpected error\.execution at <string>:1:\d+ <assign>"):
        session.check()
    session.check()  # reported already


def test_a_session_that_is_not_strict_only_checks_expectations() -> None:
    session = start(doc(BROKEN))
    session.send("go")
    session.check()
    assert [e.event for e in session.errors] == ["error.execution"]


@pytest.mark.parametrize(
    ("event", "match"),
    [("error.execution", None), ("error", None), ("error.*", "x"), ("error.execution", "not defined")],
)
def test_expected_errors_pass(event: str, match: str | None) -> None:
    session = start(doc(BROKEN), strict=True).expect_error(event, match=match)
    session.send("go")
    session.check()


@pytest.mark.parametrize(
    ("event", "match"), [("error.communication", None), ("error.exec", None), ("error.execution", "TypeError")]
)
def test_an_expectation_that_does_not_match_fails_both_ways(event: str, match: str | None) -> None:
    session = start(doc(BROKEN), strict=True).expect_error(event, match=match)
    session.send("go")
    with pytest.raises(StrictError) as info:
        session.check()
    assert "unexpected error.execution" in str(info.value)
    assert f"expected {event}" in str(info.value)


def test_as_a_context_manager_a_strict_session_is_cancelled_and_checked() -> None:
    with pytest.raises(StrictError):
        with start(doc(BROKEN), strict=True) as session:
            session.send("go")
    assert not session.running and session.end_reason == "cancelled"


def test_a_child_stopped_by_a_limit_is_an_error_of_a_strict_session() -> None:
    document = doc("""
<state id="s">
  <invoke id="spinner"><content>
    <scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" initial="a">
      <state id="a"><transition target="a"/></state>
    </scxml>
  </content></invoke>
</state>""")
    session = start(document, strict=True, limits=orsguard.Limits(max_microstep_count=10))
    session.run(1)
    [error] = session.errors
    assert (error.event, error.invokeid, error.tagname, error.line) == ("error.limit", "spinner", "invoke", 3)


# ---------------------------------------------------------------- outbox


SENDS = """
<state id="s">
  <onentry>
    <send event="out" type="fake" target="far" id="one"><param name="n" expr="1"/></send>
    <send event="later" type="fake" target="far" delay="2s"/>
    <send event="self"/>
    <send event="inner" target="#_internal"/>
  </onentry>
  <transition event="inner" target="t"/>
</state>
<state id="t"><transition event="self" target="u"/></state>
<state id="u"/>"""


@pytest.mark.parametrize(
    ("mode", "recorded", "dispatched"), [("record", True, False), ("both", True, True), ("dispatch", False, True)]
)
def test_sends_that_leave_are_recorded_or_dispatched(mode: str, recorded: bool, dispatched: bool) -> None:
    fake = FakeProcessor()
    session = start(doc(SENDS), sends=mode, ioprocessors=[fake])
    assert session.configuration == {"u"}  # the session's own and internal events are delivered as ever
    session.advance(2)
    expected = [("out", "far"), ("later", "far")]
    assert fake.sent == (expected if dispatched else [])
    assert [(s.event, s.target) for s in session.outbox] == (expected if recorded else [])
    if recorded:
        first, second = session.outbox
        assert (first.type, first.data, first.delay, first.sendid, first.time) == ("fake", {"n": 1}, 0.0, "one", 0.0)
        assert (second.delay, second.time, second.invokeid) == (2.0, 2.0, None)
        assert second.sendid.startswith(session.session_id)


def test_a_cancelled_delayed_send_never_leaves() -> None:
    document = doc("""
<state id="s">
  <onentry><send id="t" event="timer" type="fake" target="x" delay="5s"/></onentry>
  <transition event="stop" target="s2"><cancel sendid="t"/></transition>
</state><state id="s2"/>""")
    session = start(document, sends="record")
    session.send("stop")
    session.advance(10)
    assert session.outbox == []


def test_a_type_without_processor_is_recorded_or_is_an_error() -> None:
    body = '<state id="s"><onentry><send event="x" type="http://nobody.example/" target="t"/></onentry></state>'
    recorded = start(doc(body), sends="record", strict=True)
    assert [s.type for s in recorded.outbox] == ["http://nobody.example/"]
    recorded.check()
    dispatched = start(doc(body), sends="both")
    assert dispatched.outbox == []
    assert [e.tagname for e in dispatched.errors] == ["send"]


def test_sends_of_invoked_sessions_reach_the_invoker_outbox_and_parent_events_are_delivered() -> None:
    document = doc("""
<state id="s">
  <invoke id="kid"><content>
    <scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" initial="c">
      <state id="c"><onentry>
        <send event="up" type="fake" target="stat"/>
        <send event="hello" target="#_parent"/>
      </onentry></state>
    </scxml>
  </content></invoke>
  <transition event="hello" target="t"/>
</state><state id="t"/>""")
    session = start(document, sends="record")
    session.run(1)
    assert session.configuration == {"t"}
    assert [(s.event, s.invokeid) for s in session.outbox] == [("up", "kid")]


def test_an_unknown_send_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="sends must be one of"):
        orsguard.Session(doc('<state id="s"/>'), sends="drop")


# ---------------------------------------------------------------- data


def test_data_is_a_live_read_only_mapping_of_python_values() -> None:
    document = doc("""
<datamodel>
  <data id="n" expr="1"/>
  <data id="caller" expr="{ani: '555', tags: ['vip', 2]}"/>
  <data id="nothing"/>
</datamodel>
<state id="s">
  <transition event="inc"><assign location="n" expr="n + 1"/></transition>
  <onentry><script>var scratch = 1;</script></onentry>
</state>""")
    session = start(document)
    data = session.data
    assert dict(data) == {"n": 1, "caller": {"ani": "555", "tags": ["vip", 2]}, "nothing": None}
    session.send("inc")
    assert data["n"] == 2
    assert "scratch" not in data and len(data) == 3
    with pytest.raises(KeyError):
        data["scratch"]
    with pytest.raises(TypeError):
        data["n"] = 5  # type: ignore[index]
    assert session.data["caller"]["ani"] == "555"
    session.data["caller"]["ani"] = "changed"  # a copy: the session is untouched
    assert session.data["caller"]["ani"] == "555"


def test_data_of_a_null_datamodel_session_is_empty() -> None:
    session = start(doc('<state id="s"/>', 'initial="s" datamodel="null"'))
    assert dict(session.data) == {}


def test_reading_data_never_raises_an_error_event() -> None:
    document = doc('<datamodel><data id="x" expr="1"/></datamodel><state id="s"/>')
    session = orsguard.Session(document, clock=orsguard.VirtualClock(), strict=True)
    with pytest.raises(orsguard.ExecutionError):
        session.data["x"]  # declared only once the session starts
    session.start()
    assert session.data["x"] == 1
    assert session.errors == []


# ---------------------------------------------------------------- tracing


def test_on_transition_reports_initial_transitions_events_and_invoked_children() -> None:
    document = doc("""
<state id="s" initial="s1">
  <state id="s1"><transition event="go" target="s2"/></state>
  <state id="s2">
    <invoke id="kid"><content>
      <scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" initial="c">
        <state id="c"><transition target="d"/></state><state id="d"/>
      </scxml>
    </content></invoke>
  </state>
</state>""")
    trace: list[TransitionTaken] = []
    session = start(document, on_transition=trace.append)
    session.send("go")
    assert [(str(t), t.event, t.invokeid) for t in trace] == [
        ("__scxml__ -> s", None, None),
        ("s -> s1", None, None),
        ("s1 -> s2", "go", None),
        ("__scxml__ -> c", None, "kid"),
        ("c -> d", None, "kid"),
    ]
    assert trace[2] == "s1 -> s2" and isinstance(trace[2], str)
    assert "on go" in repr(trace[2])


def test_a_failing_data_initialization_is_located_at_its_data_element() -> None:
    document = doc("""
<datamodel>
  <data id="ok" expr="1"/>
  <data id="bad" expr="ok.missing.deeper"/>
</datamodel>
<state id="s"/>""")
    session = start(document)
    [error] = session.errors
    assert (error.tagname, error.line, error.column) == ("data", 4, 3)
    assert session.data["ok"] == 1 and session.data["bad"] is None


def test_an_invoked_document_that_does_not_load_is_located_in_that_document(tmp_path: Any) -> None:
    (tmp_path / "child.scxml").write_text(
        '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0">\n'
        '  <state id="a"><transition target="nowhere"/></state>\n</scxml>\n'
    )
    (tmp_path / "parent.scxml").write_text(
        SCXML.format(attrs='initial="s"', body='<state id="s"><invoke src="child.scxml"/></state>')
    )
    session = start(orsguard.load(tmp_path / "parent.scxml"))
    [error] = session.errors
    assert (error.event, error.tagname, error.line, error.file) == (
        "error.execution",
        "transition",
        2,
        str(tmp_path / "child.scxml"),
    )
    assert "nowhere" in error.reason


def test_an_invoke_that_cannot_start_is_located_at_its_invoke_element() -> None:
    document = doc("""
<state id="s">
  <invoke type="http://example.org/unknown" src="x.scxml"/>
  <invoke srcexpr="nosuch.path"/>
</state>""")
    session = start(document)
    assert [(e.tagname, e.line, e.column) for e in session.errors] == [("invoke", 3, 3), ("invoke", 4, 3)]
    assert "unsupported invoke type" in session.errors[0].reason
