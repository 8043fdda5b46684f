"""orsguard's QuickJS binding: checks that run nothing, the deadline, terminate, conversions, memory."""

from __future__ import annotations

import gc
import math
import threading
import time
import weakref

import pytest

from orsguard import DocumentError, Limits, Session, VirtualClock, load
from orsguard._core import ScriptInterrupted
from orsguard.datamodels import _quickjs as qjs
from orsguard.datamodels.ecmascript import _PRELUDE, _xml_tree
from orsguard.errors import ExecutionError

NS = 'xmlns="http://www.w3.org/2005/07/scxml" version="1.0"'


def context(sources: list[tuple[int, str]] = ()) -> qjs.Context:
    """A bare context whose slot k holds the k-th function source."""
    ctx = qjs.Context(max(len(sources), 1), _PRELUDE, lambda s: s == "here", _xml_tree, lambda k: None)
    for k, (kind, src) in enumerate(sources):
        ctx.compile(k, kind, src)
    return ctx


def session_of(text: str, *, check: bool = True, **limits) -> tuple[Session, list]:
    logs: list = []
    doc = load(text, check_expressions=check)
    s = Session(
        doc,
        limits=Limits.unlimited().replace(**limits),
        clock=VirtualClock(),
        on_log=lambda label, value: logs.append((label, value)),
    )
    return s, logs


@pytest.fixture
def deadline():
    rt = qjs.runtime()
    yield rt
    rt.deadline = 0.0


# ---------------------------------------------------------------- expressions cannot escape their wrapper

ESCAPES = [
    ("cond", "1)}); for(;;){} (function(){return (1"),
    ("cond", "1]); for(;;){} ([1"),
    ("cond", "1 }) ; globalThis.pwned = 1; ({ a: 1"),
    ("expr", "0)}); globalThis.pwned = 1; (function(){return (0"),
    ("expr", "0 // comment\n)}); globalThis.pwned = 1; (function(){return (0"),
]


@pytest.mark.parametrize(("attr", "text"), ESCAPES)
def test_an_expression_that_closes_its_wrapper_is_rejected_at_load(attr, text):
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace("\n", "&#10;")
    if attr == "cond":
        element = f'<transition cond="{text}" target="b"/>'
    else:
        element = f'<onentry><log expr="{text}"/></onentry>'
    with pytest.raises(DocumentError) as info:
        load(f'<scxml {NS} initial="a"><state id="a">{element}</state><state id="b"/></scxml>')
    assert info.value.line == 1


@pytest.mark.parametrize(
    "location",
    [
        "x) = 1; globalThis.pwned = 1; (x",
        "x; globalThis.pwned = 1",
        "x]; globalThis.pwned = 1; [x",
        "a + b",
        "f()",
    ],
)
def test_a_location_must_be_one_assignable_target(location):
    with pytest.raises(DocumentError, match="not assignable"):
        load(
            f'<scxml {NS}><datamodel><data id="x"/></datamodel><state id="a"><onentry>'
            f'<assign location="{location}" expr="1"/></onentry></state></scxml>'
        )


@pytest.mark.parametrize(
    "element",
    [
        '<foreach array="[1]" item="x) ; globalThis.pwned = 1; (x"/>',
        '<foreach array="[1]" item="x" index="i; globalThis.pwned = 1"/>',
        '<send event="e" idlocation="x; globalThis.pwned = 1"/>',
        '<send event="e" namelist="a+b"/>',
        '<send event="e"><param name="p" location="f()"/></send>',
    ],
)
def test_foreach_idlocation_namelist_and_param_locations_are_checked(element):
    with pytest.raises(DocumentError, match="not assignable"):
        load(f'<scxml {NS}><state id="a"><onentry>{element}</onentry></state></scxml>')


ESCAPING_DOC = f"""<scxml {NS} initial="a">
  <state id="a">
    <onentry>
      <log label="expr" expr="0)}}); globalThis.pwned = 1; (function(){{return (0"/>
      <assign location="x) = 1; globalThis.pwned = 1; (x" expr="2"/>
    </onentry>
    <transition cond="1)}}); globalThis.pwned = 1; (function(){{return (1" target="b"/>
    <transition event="error.execution" target="c"/>
  </state>
  <state id="b"/>
  <state id="c"><onentry><log label="pwned" expr="typeof pwned"/></onentry></state>
</scxml>"""


def test_unchecked_escapes_become_error_execution_and_never_run():
    session, logs = session_of(ESCAPING_DOC, check=False)
    session.start()
    assert session.is_active("c")
    assert ("pwned", "undefined") in logs
    assert ("expr", None) not in logs and all(label != "expr" for label, _ in logs)


def test_the_classic_escape_payload_does_not_hang_load_or_run():
    text = (
        f'<scxml {NS} initial="a"><state id="a"><transition cond="1)}}); for(;;){{}} (function(){{return (1"'
        ' target="b"/><transition event="error.execution" target="c"/></state><state id="b"/>'
        '<state id="c"/></scxml>'
    )
    with pytest.raises(DocumentError):
        load(text)
    session, _ = session_of(text, check=False)
    session.start()
    assert session.is_active("c")


def test_check_compiles_without_running():
    assert qjs.check("cond", "x > 1") is None
    assert qjs.check("script", "for (;;) {}") is None
    assert qjs.check("value", "1 +") is not None
    assert qjs.check("script", "function (") is not None
    assert qjs.check("assign", "1", "a.b[0]") is None
    assert qjs.check("foreach", "[1, 2]", None, ("item", "")) is None


# ---------------------------------------------------------------- data ids (issue item 3)


@pytest.mark.parametrize(
    "data_id", ["for", "class", "let", "eval", "arguments", "undefined", "NaN", "a-b", "1a", "yield", "static", "x y"]
)
def test_a_data_id_that_cannot_be_assigned_is_a_document_error_with_line(data_id):
    with pytest.raises(DocumentError, match="is not a valid ECMAScript variable name") as info:
        load(f'<scxml {NS}>\n<datamodel>\n<data id="{data_id}"/></datamodel><state id="a"/></scxml>')
    assert info.value.line == 3


@pytest.mark.parametrize("data_id", ["x", "_x", "$x", "x1", "caf\u00e9"])
def test_ordinary_data_ids_load_and_run(data_id):
    session, logs = session_of(
        f'<scxml {NS}><datamodel><data id="{data_id}" expr="7"/></datamodel>'
        f'<state id="a"><onentry><log label="v" expr="{data_id}"/></onentry></state></scxml>'
    )
    session.start()
    assert logs == [("v", 7)]


XML_FILE = '<?xml version="1.0" encoding="UTF-8"?>\n<config><item key="k">v\u00e9</item></config>\n'


def test_data_src_of_an_xml_file_with_an_encoding_declaration_loads(tmp_path):
    (tmp_path / "config.xml").write_text(XML_FILE, encoding="utf-8")
    path = tmp_path / "doc.scxml"
    path.write_text(
        f'<scxml {NS}><datamodel><data id="d" src="config.xml"/></datamodel><state id="a">'
        '<onentry><log label="v" expr="d.getElementsByTagName(\'item\')[0].textContent"/></onentry>'
        "</state></scxml>",
        encoding="utf-8",
    )
    logs: list = []
    session = Session(
        load(path),
        limits=Limits.unlimited(),
        clock=VirtualClock(),
        on_log=lambda label, value: logs.append((label, value)),
    )
    session.start()
    assert logs == [("v", "v\u00e9")]


def test_inline_xml_with_an_encoding_declaration_loads():
    session, logs = session_of(
        f'<scxml {NS}><datamodel><data id="d"><![CDATA[<?xml version="1.0" encoding="UTF-8"?><a><b>x</b></a>]]>'
        '</data></datamodel><state id="a"><onentry><log label="v" expr="d.documentElement.tagName"/></onentry>'
        "</state></scxml>"
    )
    session.start()
    assert logs == [("v", "a")]


# ---------------------------------------------------------------- the deadline and terminate


def test_the_deadline_stops_an_endless_loop(deadline):
    ctx = context([(qjs.KIND_CALL, "(function () { while (true) {} })")])
    deadline.deadline = time.monotonic() + 0.2
    start = time.monotonic()
    with pytest.raises(ScriptInterrupted):
        ctx.call(0)
    assert 0.2 <= time.monotonic() - start < 2.0


def test_the_deadline_stops_a_backtracking_regexp(deadline):
    ctx = context([(qjs.KIND_COND, "(function () { return /^(a+)+$/.test('a'.repeat(40) + '!'); })")])
    deadline.deadline = time.monotonic() + 0.2
    with pytest.raises(ScriptInterrupted):
        ctx.cond(0)


def test_a_past_deadline_is_not_reached_by_short_code(deadline):
    # The handler runs every few thousand operations: a short call finishes first.
    ctx = context([(qjs.KIND_VALUE, "(function () { return 1 + 1; })")])
    deadline.deadline = time.monotonic() - 1
    assert ctx.value(0) == 2


def test_the_interrupt_cannot_be_caught_by_the_script(deadline):
    ctx = context([(qjs.KIND_CALL, "(function () { for (;;) { try { while (true) {} } catch (e) {} } })")])
    deadline.deadline = time.monotonic() + 0.1
    with pytest.raises(ScriptInterrupted):
        ctx.call(0)


def test_terminate_from_another_thread_stops_a_running_script():
    ctx = context([(qjs.KIND_CALL, "(function () { while (true) {} })")])
    timer = threading.Timer(0.2, ctx.terminate)
    timer.start()
    try:
        with pytest.raises(ScriptInterrupted):
            ctx.call(0)
    finally:
        timer.cancel()
    ctx.eval("1")  # the flag was consumed: the next script runs


def test_terminate_before_a_call_stops_the_next_one():
    ctx = context([(qjs.KIND_VALUE, "(function () { return 1; })")])
    ctx.terminate()
    with pytest.raises(ScriptInterrupted):
        ctx.value(0)
    assert ctx.value(0) == 1


def test_terminate_only_stops_its_own_context():
    a = context([(qjs.KIND_VALUE, "(function () { return 'a'; })")])
    b = context([(qjs.KIND_VALUE, "(function () { return 'b'; })")])
    a.terminate()
    assert b.value(0) == "b"


def test_in_works_while_a_timeout_is_set_and_functions_are_defined():
    session, logs = session_of(
        f"""<scxml {NS} initial="a">
      <script>function f() {{ return 1; }}</script>
      <state id="a"><transition event="go" cond="f() == 1 &amp;&amp; In('a')" target="b"/></state>
      <state id="b"/></scxml>""",
        process_event_timeout=0.5,
    )
    session.start()
    session.send("go")
    assert session.is_active("b")


def test_a_document_that_redefines_in_only_hurts_itself():
    session, logs = session_of(f"""<scxml {NS} initial="a">
      <script>In = function () {{ return false; }};</script>
      <state id="a"><transition event="go" cond="In('a')" target="b"/>
        <transition event="go" target="c"/></state>
      <state id="b"/><state id="c"/></scxml>""")
    session.start()
    session.send("go")
    assert session.is_active("c")


def test_deep_recursion_is_a_clean_error():
    ctx = context([(qjs.KIND_CALL, "(function () { function f(n) { return f(n + 1) + 1; } f(0); })")])
    with pytest.raises(ExecutionError, match="stack"):
        ctx.call(0)
    ctx.eval("1")


def test_the_datamodel_offers_the_runtime_deadline_address():
    session, _ = session_of(f"<scxml {NS}><state id='a'/></scxml>")
    assert session.dm.deadline_address() == qjs.runtime().deadline_address() != 0


# ---------------------------------------------------------------- lifetime


def test_a_session_and_its_context_go_away_without_the_cycle_collector():
    session, _ = session_of(
        f"<scxml {NS}><datamodel><data id='x' expr='[1, 2, 3]'/></datamodel><state id='a'/></scxml>"
    )
    session.start()
    ref = weakref.ref(session.dm)
    session.cancel()
    del session
    assert ref() is None


CHILD = (
    f"<content><scxml {NS} initial='c'><datamodel><data id='y' expr='{{a: [1]}}'/></datamodel>"
    "<state id='c'><transition event='t' target='c'><send event='back' target='#_parent'/></transition>"
    "</state></scxml></content>"
)
DROPPED = {
    "plain": f"<scxml {NS}><datamodel><data id='x' expr='[1, 2, 3]'/></datamodel>"
    "<state id='a'><transition event='t' target='a'><assign location='x' expr='_event.data'/></transition>"
    "</state></scxml>",
    "errors and outbox": f"<scxml {NS}><state id='a'><transition event='t' target='a'>"
    "<send event='out' target='http://example.invalid/' type='http://www.w3.org/TR/scxml/#BasicHTTPEventProcessor'/>"
    "<assign location='nowhere' expr='1'/></transition></state></scxml>",
    "invoked child": f"<scxml {NS}><state id='a'><invoke id='kid' autoforward='true'>{CHILD}</invoke>"
    "<transition event='t' target='a'/></state></scxml>",
}


@pytest.mark.parametrize("text", DROPPED.values(), ids=DROPPED.keys())
@pytest.mark.parametrize("clock", ["own real clock", "shared virtual clock"])
def test_a_dropped_session_frees_its_contexts_by_reference_counting(text: str, clock: str) -> None:
    shared = VirtualClock()
    rt = qjs.runtime()
    gc.collect()
    gc.disable()
    try:
        before = rt.live_contexts
        session = Session(load(text), clock=shared if clock != "own real clock" else None, sends="record")
        session.start()
        session.send("t", {"k": [1, 2]})
        assert session.data is not None and session.running
        assert rt.live_contexts > before
        ref = weakref.ref(session)
        del session
        assert ref() is None
        assert rt.live_contexts == before
    finally:
        gc.enable()


def test_close_frees_the_context_and_later_calls_fail():
    session, _ = session_of(f"<scxml {NS}><datamodel><data id='x' expr='1'/></datamodel><state id='a'/></scxml>")
    session.start()
    session.dm.close()
    session.dm.close()
    with pytest.raises(ExecutionError, match="closed"):
        session.dm.value(0)


# ---------------------------------------------------------------- conversion

ECHO = f"""<scxml {NS} initial="a">
  <state id="a"><transition event="e" target="a">
    <log label="type" expr="typeof _event.data"/><log label="data" expr="_event.data"/>
  </transition></state>
</scxml>"""


@pytest.mark.parametrize(
    ("value", "js_type"),
    [
        (None, "undefined"),
        (True, "boolean"),
        (3, "number"),
        (2**53, "number"),
        (1.5, "number"),
        (2**53 + 1, "bigint"),
        (10**400, "bigint"),
        (-(10**30), "bigint"),
        ("x", "string"),
        ([1, [2]], "object"),
        ({"a": {"b": None}}, "object"),
        ((1, 2), "object"),
    ],
)
def test_values_cross_into_javascript_and_back(value, js_type):
    session, logs = session_of(ECHO)
    session.start()
    session.send("e", value)
    assert logs[0] == ("type", js_type)
    assert logs[1] == ("data", list(value) if isinstance(value, tuple) else value)


def test_event_is_a_frozen_object_with_every_field_and_undefined_for_absent_ones():
    session, logs = session_of(f"""<scxml {NS} initial="a"><state id="a"><transition event="e" target="a">
      <log label="keys" expr="Object.keys(_event).join()"/>
      <log label="frozen" expr="Object.isFrozen(_event)"/>
      <log label="absent"
           expr="[_event.sendid, _event.invokeid, _event.data].map(function (v) {{ return typeof v; }}).join()"/>
      <script>_event.name = 'changed'; _event.extra = 1;</script>
      <log label="after" expr="_event.name + ',' + ('extra' in _event)"/>
      <script>(function () {{ 'use strict'; _event.name = 'changed'; }})()</script>
    </transition>
    <transition event="error.execution" target="a"><log label="error" expr="_event.data.message"/></transition>
    </state></scxml>""")
    session.start()
    session.send("e")
    assert logs[:4] == [
        ("keys", "name,type,sendid,origin,origintype,invokeid,data,raw"),
        ("frozen", True),
        ("absent", "undefined,undefined,undefined"),
        ("after", "e,false"),
    ]
    assert logs[4][0] == "error" and "TypeError" in logs[4][1], logs[4]


def test_nan_and_infinity_are_numbers():
    session, logs = session_of(ECHO)
    session.start()
    session.send("e", [math.nan, math.inf, -math.inf])
    data = logs[1][1]
    assert math.isnan(data[0]) and data[1:] == [math.inf, -math.inf]


def test_lone_surrogates_are_kept_both_ways():
    session, logs = session_of(ECHO)
    session.start()
    session.send("e", "a\ud800b")
    assert logs[1] == ("data", "a\ud800b")


def test_a_key_named_proto_stays_a_plain_property():
    session, logs = session_of(ECHO)
    session.start()
    session.send("e", {"__proto__": {"x": 1}})
    assert logs[1] == ("data", {"__proto__": {"x": 1}})


def deep(n: int) -> list:
    v: list = []
    for _ in range(n):
        v = [v]
    return v


def cyclic() -> list:
    v: list = []
    v.append(v)
    return v


def doubling() -> list:
    v: list = []
    for _ in range(40):
        v = [v, v]
    return v


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        b"bytes",
        object(),
        deep(100_000),
        cyclic(),
        {1: "int key"},
        doubling(),
        [1, {"a": b"x"}],
    ],
)
def test_values_without_an_ecmascript_form_are_a_value_error_at_send(value):
    session, _ = session_of(ECHO)
    session.start()
    refused = "cannot be an ECMAScript value|nests deeper than|contains itself|keys must be strings|more than 1000000"
    with pytest.raises(ValueError, match=refused):
        session.send("e", value)
    assert session.running


def test_bad_initial_data_is_a_value_error():
    doc = load(f"<scxml {NS}><datamodel><data id='x'/></datamodel><state id='a'/></scxml>")
    with pytest.raises(ValueError, match="a set cannot be an ECMAScript value"):
        Session(doc, data={"x": {1, 2}})


def test_values_from_javascript_that_nest_too_deeply_are_error_execution():
    session, logs = session_of(f"""<scxml {NS} initial="a">
      <state id="a"><onentry>
        <send event="out"><param name="p" expr="(function () {{ var v = []; for (var i = 0; i &lt; 5000; i++)
          v = [v]; return v; }})()"/></send>
      </onentry>
        <transition event="error.execution" target="b"/></state>
      <state id="b"/></scxml>""")
    session.start()
    assert session.is_active("b")


def test_javascript_values_convert_like_json():
    ctx = context()
    assert ctx.eval("({a: 1, f: function () {}, u: undefined, d: new Date(0), n: null})") == {
        "a": 1,
        "d": "1970-01-01T00:00:00.000Z",
        "n": None,
    }
    assert ctx.eval("[1, function () {}, undefined]") == [1, None, None]
    assert ctx.eval("123456789012345678901234567890n") == 123456789012345678901234567890


def test_a_throwing_getter_is_error_execution():
    ctx = context()
    with pytest.raises(ExecutionError, match="boom"):
        ctx.eval("({get x() { throw new Error('boom'); }})")


# ---------------------------------------------------------------- memory


def test_a_script_that_allocates_without_bound_fails_and_the_engine_survives():
    before = qjs.memory_limits()
    qjs.set_memory_limits(8 * 1024 * 1024, before[1])
    try:
        greedy = context([(qjs.KIND_CALL, "(function () { var a = []; for (;;) a.push(new Array(1000).fill(1)); })")])
        other = context([(qjs.KIND_VALUE, "(function () { return [1, 2, 3].map(function (x) { return x * 2; }); })")])
        with pytest.raises(ExecutionError, match="memory"):
            greedy.call(0)
        assert other.value(0) == [2, 4, 6]
    finally:
        qjs.set_memory_limits(*before)


def test_a_script_that_catches_the_allocation_failure_still_fails():
    before = qjs.memory_limits()
    qjs.set_memory_limits(4 * 1024 * 1024, before[1])
    try:
        ctx = context(
            [
                (
                    qjs.KIND_CALL,
                    "(function () { var a = []; try { for (;;) a.push(new Array(1000).fill(1)); } catch (e) {} })",
                )
            ]
        )
        with pytest.raises(ExecutionError, match="memory"):
            ctx.call(0)
    finally:
        qjs.set_memory_limits(*before)


def test_event_data_without_an_ecmascript_form_inside_a_session_is_error_execution():
    from orsguard._core import Event

    session, logs = session_of(f"""<scxml {NS} initial="a">
      <state id="a"><transition event="e" target="b"><log label="name" expr="_event.name"/></transition></state>
      <state id="b"><transition event="error.execution" target="c"/></state>
      <state id="c"/></scxml>""")
    session.start()
    assert session.enqueue_external(Event("e", {"bad": {1, 2}}))
    session._process_external()
    assert logs == [("name", "e")]
    assert session.is_active("c")


def test_the_global_environment_has_no_typed_arrays_weak_refs_or_clock():
    ctx = context()
    assert ctx.eval("[typeof Uint8Array, typeof ArrayBuffer, typeof WeakRef, typeof performance]") == ["undefined"] * 4
    assert ctx.eval("[typeof JSON, typeof Map, typeof Proxy, typeof Promise, typeof BigInt, typeof Date]") == [
        "object",
        "function",
        "function",
        "function",
        "function",
        "function",
    ]


def test_a_bigint_with_too_many_digits_for_python_is_an_execution_error():
    ctx = context()
    with pytest.raises(ExecutionError, match="digits"):
        ctx.eval("10n ** 5000n")
