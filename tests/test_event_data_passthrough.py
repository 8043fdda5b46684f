"""A ``<param>`` or ``<content>`` of exactly ``_event.data`` gives what the engine would.

``Context.bind`` builds ``_event`` only when a script reads it, and such an
expression then takes the event's data from Python. Every case here sends the
same data through that path and through one the engine evaluates
(``(_event.data)``), and compares what left the session.
"""

from __future__ import annotations

import math

import pytest

from orsguard import Limits, Session, VirtualClock, load
from orsguard._core import Event
from orsguard.datamodels import _quickjs as qjs
from orsguard.datamodels.ecmascript import _PRELUDE, _xml_tree

NS = 'xmlns="http://www.w3.org/2005/07/scxml" version="1.0"'


def _doc(expr: str, before: str = "", prelude: str = "") -> str:
    return f"""<scxml {NS} initial="a" datamodel="ecmascript"><datamodel><data id="n" expr="0"/></datamodel>
      <state id="a">{prelude}<transition event="e">{before}
        <send event="out" target="#_x" type="record-me"><param name="d" expr="{expr}"/></send>
        <send event="whole" target="#_x" type="record-me"><content expr="{expr}"/></send>
      </transition>
      <transition event="error.execution"><send event="err" target="#_x" type="record-me">
        <param name="m" expr="_event.data.message"/></send></transition>
      </state></scxml>"""


def _run(expr: str, data: object, before: str = "", prelude: str = "") -> list[tuple[str | None, object]]:
    s = Session(load(_doc(expr, before, prelude)), sends="record", clock=VirtualClock(), limits=Limits.unlimited())
    s.start()
    s.send("e", data)
    return [(sent.event, sent.data) for sent in s.outbox]


def _same(a: object, b: object) -> bool:
    """Equal, with the same types all the way down and the same key order; NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _nested(depth: int) -> dict:
    d: dict = {"leaf": 1}
    for _ in range(depth):
        d = {"x": d}
    return d


CASES = [
    None,
    True,
    False,
    0,
    -1,
    2**31 - 1,
    -(2**31),
    2**31,
    -(2**31) - 1,
    2**40,
    2**53,
    -(2**53),
    2**53 + 1,
    2**63,
    2**70,
    1.0,
    1.5,
    -0.0,
    math.inf,
    -math.inf,
    math.nan,
    "",
    "text",
    "é ✓ 𝄞",
    "a\x00b",
    "a\ud800b",
    {},
    {"n": 7},
    {"b": 1, "a": 2},
    {"1": "one", "b": 2},
    {"b": 2, "1": "one", "0": 0},
    {"01": 1, "x": 2},
    {"-1": 1, "z": 2},
    {"__og_xml": "<a/>"},
    {"__proto__": {"p": 1}},
    {"toJSON": 3},
    {"constructor": 1},
    {"k": {"deep": [1, {"a": None}]}},
    [1, 2],
    (1, 2),
    {"big": 2**60},
    {"f": 2.0, "i": 2},
    {"s\ud800": 1},
    _nested(20),
    _nested(40),
    {str(i) + "k": i for i in range(300)},
    {"k": list(range(2000))},
]


@pytest.mark.parametrize("data", CASES, ids=range(len(CASES)))
def test_the_data_leaves_as_the_engine_would_give_it(data):
    fast = _run("_event.data", data)
    engine = _run("(_event.data)", data)
    assert _same(fast, engine), (fast, engine)
    assert [name for name, _ in fast] == ["out", "whole"]


def _run_unchecked(expr: str, data: object) -> list[tuple[str | None, object]]:
    # Session.send refuses such data; an event queued directly is bound as it comes.
    s = Session(load(_doc(expr)), sends="record", clock=VirtualClock())
    s.start()
    assert s.enqueue_external(Event("e", data))
    s._process_external()
    return [(sent.event, sent.data) for sent in s.outbox]


def test_data_without_an_ecmascript_form_is_error_execution_on_both_paths():
    for data in ({"bad": {1, 2}}, {1: "int key"}, object()):
        fast = _run_unchecked("_event.data", data)
        assert fast == _run_unchecked("(_event.data)", data)
        assert [name for name, _ in fast] == ["out", "whole", "err"], fast


def test_no_event_data_is_null():
    assert _run("_event.data", None) == [("out", {"d": None}), ("whole", None)]


def test_each_send_gets_its_own_copy_and_the_callers_dict_is_not_shared():
    data = {"n": {"m": 1}}
    out = _run("_event.data", data)
    first, second = out[0][1]["d"], out[1][1]
    assert first == second == data
    assert first is not second and first["n"] is not second["n"]
    assert first is not data and first["n"] is not data["n"]
    first["n"]["m"] = 99
    assert second == {"n": {"m": 1}} and data == {"n": {"m": 1}}


def test_a_mutation_by_a_script_before_the_send_is_seen():
    before = "<script>_event.data.n = 5; _event.data.added = true;</script>"
    assert _run("_event.data", {"n": 1}, before) == [
        ("out", {"d": {"n": 5, "added": True}}),
        ("whole", {"n": 5, "added": True}),
    ]


def test_reading_another_field_first_changes_nothing():
    before = '<log expr="_event.name"/><assign location="n" expr="_event.data.n + 1"/>'
    assert _run("_event.data", {"n": 1}, before) == _run("(_event.data)", {"n": 1}, before)


@pytest.mark.parametrize(
    "patch",
    [
        "Object.prototype.toJSON = function () { return 'patched'; };",
        "Object.defineProperty(Object.prototype, 'toJSON', { get: function () { n++; return undefined; } });",
        "Object.prototype.__og_xml = '&lt;x/&gt;';",
    ],
)
def test_a_document_that_gives_object_prototype_to_json_or_the_dom_marker_is_followed(patch):
    prelude = f"<onentry><script>{patch}</script></onentry>"
    fast = _run("_event.data", {"n": 1}, prelude=prelude)
    assert _same(fast, _run("(_event.data)", {"n": 1}, prelude=prelude))
    # Plain values are not objects: nothing to patch.
    assert _same(_run("_event.data", 4, prelude=prelude), _run("(_event.data)", 4, prelude=prelude))


def test_a_param_that_throws_after_the_data_is_located_on_that_param():
    doc = f"""<scxml {NS} initial="a"><state id="a"><transition event="e">
        <send event="out" target="#_x" type="record-me"><param name="d" expr="_event.data"/>
          <param name="bad" expr="nosuchvar"/></send></transition>
      <transition event="error.execution"><send event="err" target="#_x" type="record-me">
        <param name="m" expr="_event.data.message"/><param name="line" expr="_event.data.line"/>
        </send></transition></state></scxml>"""
    s = Session(load(doc), sends="record", clock=VirtualClock())
    s.start()
    s.send("e", {"n": 1})
    assert [sent.event for sent in s.outbox] == ["err"]
    assert "nosuchvar" in s.outbox[0].data["m"] and s.outbox[0].data["line"] == 3, s.outbox[0].data


def test_event_data_before_any_event_is_error_execution():
    doc = f"""<scxml {NS} initial="a"><state id="a"><onentry>
        <send event="out" target="#_x" type="record-me"><param name="d" expr="_event.data"/></send></onentry>
      <transition event="error.execution" target="b"/></state><state id="b"/></scxml>"""
    s = Session(load(doc), sends="record", clock=VirtualClock())
    s.start()
    assert s.outbox == [] and s.is_active("b")


def test_the_event_object_is_built_once_per_event_and_only_when_read():
    ctx = qjs.Context(1, _PRELUDE, lambda s: False, _xml_tree, lambda k: None)
    ctx.compile(0, qjs.KIND_VALUE, "(function () { return (_event.data\n); })")
    ctx.mark_event_data(0)
    ctx.bind(Event("e", {"a": 1}))
    assert ctx.eval("var first = _event; first === _event") is True
    ctx.bind(Event("f", {"a": 2}))
    assert ctx.value(0) == {"a": 2}
    assert ctx.eval("first.name + ',' + (first === _event) + ',' + _event.name + ',' + _event.data.a") == "e,false,f,2"
    ctx.eval("_event.data.a = 3")
    assert ctx.value(0) == {"a": 3} and ctx.values((0, 0)) == [{"a": 3}, {"a": 3}]
    with pytest.raises(IndexError):
        ctx.mark_event_data(1)
    ctx.close()
    with pytest.raises(Exception, match="closed"):
        ctx.value(0)


def test_a_terminate_request_stops_a_read_of_event_data_like_any_call():
    from orsguard._core import ScriptInterrupted

    ctx = qjs.Context(1, _PRELUDE, lambda s: False, _xml_tree, lambda k: None)
    ctx.compile(0, qjs.KIND_VALUE, "(function () { return (_event.data\n); })")
    ctx.mark_event_data(0)
    ctx.bind(Event("e", {"a": 1}))
    ctx.terminate()
    with pytest.raises(ScriptInterrupted):
        ctx.value(0)
    assert ctx.value(0) == {"a": 1}


def _names_doc(expr: str, setup: str) -> str:
    return f"""<scxml {NS} initial="a"><datamodel><data id="label" expr="'L'"/><data id="n" expr="1"/></datamodel>
      <state id="a"><onentry><script>{setup}</script></onentry><transition event="e">
        <send event="out" target="#_x" type="record-me"><param name="v" expr="{expr}"/></send></transition>
      <transition event="error.execution"><send event="err" target="#_x" type="record-me">
        <param name="m" expr="_event.data.message"/></send></transition>
      </state></scxml>"""


@pytest.mark.parametrize(
    ("expr", "setup"),
    [
        ("label", ""),
        ("n", "n = {a: [1, 2], b: undefined, c: function () {}};"),
        ("declared", "var declared = 'v';"),
        ("implicit", "implicit = 'created by assignment';"),
        ("lexical", "let lexical = 'let';"),
        ("constant", "const constant = 3;"),
        (
            "getter",
            "Object.defineProperty(globalThis, 'getter', {get: function () { n++; return n; }, configurable: false});",
        ),
        ("missing", ""),
        ("Math", ""),
        ("undefined", ""),
        ("NaN", ""),
        ("arguments", ""),
        ("label", "var label = 'again';"),
        ("n", "n = {toJSON: function () { return 'json'; }};"),
        ("n", "try { let n = 5; } catch (e) {}"),
    ],
)
def test_a_value_that_is_one_name_reads_what_the_engine_reads(expr, setup):
    def run(e: str) -> list:
        s = Session(load(_names_doc(e, setup)), sends="record", clock=VirtualClock())
        s.start()
        s.send("e")
        s.send("e")
        return [(sent.event, sent.data) for sent in s.outbox]

    assert _same(run(expr), run(f"({expr})"))


def test_a_global_name_read_obeys_a_terminate_request():
    from orsguard._core import ScriptInterrupted

    ctx = qjs.Context(1, _PRELUDE, lambda s: False, _xml_tree, lambda k: None)
    ctx.declare("x")
    ctx.eval("x = 4")
    ctx.compile(0, qjs.KIND_VALUE, "(function () { return (x\n); })")
    ctx.mark_global_name(0, "x")
    assert ctx.value(0) == 4 and ctx.values((0,)) == [4]
    ctx.terminate()
    with pytest.raises(ScriptInterrupted):
        ctx.value(0)
    ctx.close()
    with pytest.raises(Exception, match="closed"):
        ctx.mark_global_name(0, "x")
