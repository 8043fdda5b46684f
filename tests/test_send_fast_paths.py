"""The per-event fast paths of ``<send>`` and of the host's payloads give what the general paths give.

* A ``<send>`` whose attributes are all literal runs from one closure that
  builds its ``<param>`` object itself; the same ``<send>`` with each attribute
  given as an expression (``eventexpr``, ``targetexpr``, ``typeexpr``) takes the
  general closure. Both must hand the processor the same event and raise the
  same error events.
* ``Session.send_event`` dispatches a send to another processor, now, without
  ``_dispatch``; ``sends="both"`` takes the general path for the same send.
* The MQTT processor resolves a topic once per session, target and event name.
* The host parses an event topic once and keeps what it found.
* ``payload.loads`` skips the regular expression for short payloads without
  ``e``, ``E``, ``N`` or ``I``; the hooks' decoder is the reference.
* ``_quickjs.validate`` (run by ``Session.send`` on every event's data) keeps
  the ancestors of a value in a C array; a walk with a set is the reference.
"""

from __future__ import annotations

import asyncio
import enum
import json
import math
import sys
from pathlib import Path
from typing import Any

import mqtt5
import pytest

from orsguard import Limits, Session, VirtualClock, load
from orsguard._core import Event
from orsguard.clock import AsyncioClock
from orsguard.datamodels import _quickjs as qjs
from orsguard.errors import CommunicationError, ExecutionError
from orsguard.host import HostConfig, SessionHost, load_documents, routing
from orsguard.host import payload as host_payload
from orsguard.host.payload import RequestError, loads
from orsguard.ioprocessors import mqtt as mqtt_module
from orsguard.ioprocessors.mqtt import MqttEventIOProcessor

DOCUMENTS = Path(__file__).resolve().parent.parent / "examples" / "documents"
NS = 'xmlns="http://www.w3.org/2005/07/scxml" version="1.0"'


class Recorder:
    """A processor for type ``rec`` that records every event and can be told to fail."""

    type_uri = "http://example.org/rec"
    aliases = ("rec",)

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.seen: list[tuple[Any, ...]] = []

    def location(self, session: Any) -> str:
        return "rec:" + session.session_id

    def send(self, session: Any, event: Event, target: str) -> None:
        if event.name == "out" and self.fail is not None:
            raise self.fail
        self.seen.append(
            (event.name, event.data, event.type, event.sendid, event.origin, event.origintype, event.invokeid, target)
        )


def _doc(send_attrs: str, body: str, literal: bool) -> str:
    # Both forms keep every element on the same line, so error locations compare equal.
    attrs = send_attrs if literal else _quoted_exprs(send_attrs)
    return f"""<scxml {NS} initial="a" datamodel="ecmascript"><datamodel><data id="n" expr="0"/></datamodel>
      <state id="a"><transition event="go"><assign location="n" expr="n + 1"/>
        <send {attrs}>
        {body}</send>
      </transition>
      <transition event="error"><send event="err" type="rec"><param name="name" expr="_event.name"/>
        <param name="sendid" expr="_event.sendid"/><param name="data" expr="_event.data"/></send></transition>
      </state></scxml>"""


def _quoted_exprs(send_attrs: str) -> str:
    # event="x" -> eventexpr="'x'" for event, target and type; other attributes stay.
    out = []
    for part in send_attrs.split():
        key, _, value = part.partition("=")
        if key in ("event", "target", "type"):
            out.append(f"{key}expr=\"'{value.strip(chr(34))}'\"")
        else:
            out.append(part)
    return " ".join(out)


def _run(doc: str, data: Any, fail: BaseException | None = None, sends: str = "dispatch") -> tuple[Any, ...]:
    rec = Recorder(fail)
    session = Session(
        load(doc), ioprocessors=[rec], clock=VirtualClock(), limits=Limits.unlimited(), sends=sends, session_id="s1"
    )
    session.start()
    session.send("go", data)
    errors = [(e.event, e.reason, e.tagname, e.line) for e in session.errors]
    return rec.seen, errors


SENDS = [
    ('event="out" type="rec" target="t1"', '<param name="a" expr="n"/><param name="b" expr="_event.data"/>'),
    ('event="out" type="rec"', '<param name="a" expr="n"/>'),
    ('event="out" type="rec" target="t1" id="fixed"', '<param name="a" expr="n"/>'),
    ('event="out" type="rec" target="t1" namelist="n"', '<param name="a" expr="\'x\'"/>'),
    ('event="out" type="rec" target="t1"', '<param name="a" expr="1"/><param name="a" expr="2"/>'),
    ('event="out" type="rec" target="t1"', '<content expr="_event.data"/>'),
    ('event="out" type="rec" target="t1"', ""),
    ('event="out" type="rec" target="t1"', '<param name="a" expr="n"/><param name="b" expr="nope.x"/>'),
    ('event="out" type="rec" target="t1" id="fixed"', '<param name="b" expr="nope.x"/>'),
    ('event="out" type="rec" target="t1"', '<param name="a" expr="(function () { return 1; })"/>'),
]
FAILURES = [
    None,
    CommunicationError("broker away"),
    ValueError("bad value"),
    ExecutionError("refused here"),
]


@pytest.mark.parametrize("failure", FAILURES, ids=["ok", "communication", "other", "execution"])
@pytest.mark.parametrize(("attrs", "body"), SENDS, ids=range(len(SENDS)))
def test_a_literal_send_gives_what_the_expression_send_gives(attrs: str, body: str, failure: Any) -> None:
    data = {"k": [1, "two", None], "n": 2.5}
    fast = _run(_doc(attrs, body, literal=True), data, failure)
    general = _run(_doc(attrs, body, literal=False), data, failure)
    assert fast == general
    assert fast[0] or fast[1]  # something was sent or raised: the case is not empty


@pytest.mark.parametrize("failure", FAILURES, ids=["ok", "communication", "other", "execution"])
@pytest.mark.parametrize(("attrs", "body"), SENDS, ids=range(len(SENDS)))
def test_dispatching_now_gives_what_the_general_dispatch_gives(attrs: str, body: str, failure: Any) -> None:
    doc = _doc(attrs, body, literal=True)
    fast = _run(doc, {"x": 1}, failure)
    general = _run(doc, {"x": 1}, failure, sends="both")
    assert fast == general


def test_a_delayed_send_still_takes_the_timer() -> None:
    doc = _doc('event="out" type="rec" target="t1" delay="1s"', '<param name="a" expr="n"/>', literal=True)
    rec = Recorder()
    session = Session(load(doc), ioprocessors=[rec], clock=VirtualClock(), session_id="s1").start()
    session.send("go")
    assert rec.seen == []
    session.advance(1.0)
    assert [(name, data) for name, data, *_ in rec.seen] == [("out", {"a": 1})]


def test_a_processor_registered_under_an_scxml_alias_does_not_take_the_scxml_path() -> None:
    class Shadow(Recorder):
        aliases = ("scxml",)

    rec = Shadow()
    doc = f"""<scxml {NS} initial="a" datamodel="ecmascript"><state id="a">
      <transition event="go"><send event="here" type="scxml"/></transition>
      <transition event="here" target="b"/></state><final id="b"/></scxml>"""
    session = Session(load(doc), ioprocessors=[rec], clock=VirtualClock()).start()
    session.send("go")
    assert rec.seen == []
    assert session.final == "b"


# ---------------------------------------------------------------- MQTT topics


class _FakeSession:
    def __init__(self, sid: str) -> None:
        self.session_id = sid
        self.running = True


def _published(proc_prefix: str = "orsguard") -> tuple[MqttEventIOProcessor, list[tuple[str, bytes]]]:
    out: list[tuple[str, bytes]] = []

    def publish(topic: str, payload: bytes, properties: Any) -> None:
        out.append((topic, payload))

    return MqttEventIOProcessor(publish, topic_prefix=proc_prefix), out


TARGETS = ["./pong", "./", "a/b/", "plain/topic", "./x/", "orsguard/sessions/other/events/e"]


@pytest.mark.parametrize("target", TARGETS)
def test_a_cached_topic_is_the_resolved_one_for_every_session_and_event(target: str) -> None:
    proc, out = _published()
    sessions = [_FakeSession(f"s{i}") for i in range(5)]
    expected = []
    for _ in range(3):
        for s in sessions:
            for name in ("pong", "other", None):
                proc.send(s, Event(name, {"v": 1}), target)  # type: ignore[arg-type]
                expected.append(proc.resolve(s, target, name or ""))  # type: ignore[arg-type]
    assert [topic for topic, _ in out] == expected


@pytest.mark.parametrize("target", ["", "+/x", "./a#", "a\0b", "x" * 70000, "./" + "é" * 40000])
def test_a_bad_target_is_refused_on_every_send(target: str) -> None:
    proc, out = _published()
    s = _FakeSession("s1")
    for _ in range(2):
        with pytest.raises(CommunicationError):
            proc.send(s, Event("pong", None), target)  # type: ignore[arg-type]
    assert out == []


def test_a_session_id_with_a_wildcard_is_refused_like_the_resolved_topic() -> None:
    proc, out = _published()
    for _ in range(2):
        with pytest.raises(CommunicationError):
            proc.send(_FakeSession("a+b"), Event("pong", None), "./pong")  # type: ignore[arg-type]
    assert out == []


def test_a_new_prefix_is_used_at_once() -> None:
    proc, out = _published()
    s = _FakeSession("s1")
    proc.send(s, Event("pong", None), "./pong")  # type: ignore[arg-type]
    proc.topic_prefix = "other/"
    proc.send(s, Event("pong", None), "./pong")  # type: ignore[arg-type]
    assert [t for t, _ in out] == ["orsguard/sessions/s1/pong", "other/sessions/s1/pong"]


def test_the_topic_cache_is_bounded_and_stays_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mqtt_module, "_TOPICS_KEPT", 4)
    proc, out = _published()
    sessions = [_FakeSession(f"s{i}") for i in range(10)]
    for _ in range(2):
        for s in sessions:
            proc.send(s, Event("pong", None), "./pong")  # type: ignore[arg-type]
    assert len(proc._topics) <= 4
    assert [t for t, _ in out] == [f"orsguard/sessions/s{i}/pong" for i in range(10)] * 2


def _kept_characters(key: tuple[str, str, str | None], topic: str, prefix: str) -> int:
    # What an entry holds beyond the prefix, which every topic may repeat.
    return len(key[0]) + len(key[1]) + len(key[2] or "") + len(topic) - len(prefix)


def test_long_targets_names_and_session_ids_are_sent_but_not_kept() -> None:
    # Targets and event names can come from event data (targetexpr, eventexpr):
    # kept, 32768 of them of 64 KB each would hold gigabytes.
    proc, out = _published()
    cases = [
        (_FakeSession("s1"), "n" * 5000, "plain/topic"),
        (_FakeSession("s1"), "n" * 5000, "./"),
        (_FakeSession("s1"), "pong", "a/" + "x" * 5000 + "/"),
        (_FakeSession("s" * 5000), "pong", "./pong"),
        (_FakeSession("s1"), "pong", "./pong"),
    ]
    expected = []
    for i in range(3):
        for s, name, target in cases:
            # A fresh name each round: a long one must not be found by an equal string.
            name = name + str(i) if len(name) > 100 else name
            proc.send(s, Event(name, {"v": i}), target)  # type: ignore[arg-type]
            expected.append(proc.resolve(s, target, name))  # type: ignore[arg-type]
    assert [topic for topic, _ in out] == expected
    bound = 2 * mqtt_module._TOPIC_KEPT_LENGTH + len("/sessions//")
    assert all(_kept_characters(k, t, proc.topic_prefix) <= bound for k, t in proc._topics.items())
    # The short send is still kept.
    assert proc._topics[("s1", "./pong", "pong")] == "orsguard/sessions/s1/pong"


def test_a_long_prefix_does_not_stop_topics_being_kept() -> None:
    proc, out = _published("p" * 2000)
    s = _FakeSession("s" * 256)
    for _ in range(2):
        proc.send(s, Event("pong", None), "./pong")  # type: ignore[arg-type]
    assert [t for t, _ in out] == ["p" * 2000 + "/sessions/" + "s" * 256 + "/pong"] * 2
    assert list(proc._topics) == [("s" * 256, "./pong", "pong")]


# ---------------------------------------------------------------- payloads


def _reference(payload: bytes) -> Any:
    """What loads gave before the short-payload shortcut: the hooks' decoder whenever the regex says so."""
    if not payload:
        return None
    try:
        text = payload.decode()
        if host_payload._NEEDS_HOOKS(text):
            return host_payload._DECODE(text)
        return json.JSONDecoder().decode(text)
    except UnicodeDecodeError as exc:
        raise RequestError("bad-payload", f"payload is not UTF-8: {exc}") from None
    except ValueError as exc:
        raise RequestError("bad-payload", f"payload is not JSON: {str(exc)[:200]}") from None


PAYLOADS = [
    b"1",
    b"-0",
    b"1.5",
    b"0.1e1",
    b"1e5",
    b"1E5",
    b"1e400",
    b"-1e400",
    b"[1e999]",
    b"NaN",
    b"[NaN]",
    b"Infinity",
    b"-Infinity",
    b'{"n":Infinity}',
    b"123456789012345",
    b"1234567890123456",
    b"9007199254740993",
    b"-9007199254740993",
    b"[12345678901234]",
    b'{"n":12345}',
    b'{"e":1}',
    b'"NaN"',
    b'"e"',
    b" 1 ",
    b"[1,2,3]",
    b'{"a":[1,{"b":null}]}',
    b'{"n":1' + b"0" * 400 + b".5}",
    b"\xef\xbb\xbf1",
    b"\xef\xbb\xbf{}",
    b"\t1\n",
    b"\r\n[1]\r\n",
    b" ",
    b"\x00",
    b"[1,]",
    b"1 2",
    b'"\\ud800"',
    b"\xff",
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
def test_a_payload_decodes_as_the_hooks_decoder_says(payload: bytes) -> None:
    try:
        expected: Any = ("ok", _reference(payload))
    except RequestError as exc:
        expected = ("refused", exc.code, str(exc))
    try:
        got: Any = ("ok", loads(payload))
    except RequestError as exc:
        got = ("refused", exc.code, str(exc))
    assert repr(got) == repr(expected)


# ---------------------------------------------------------------- event topics


class _Client:
    connected = True

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, properties: Any = None) -> None:
        self.published.append((topic, payload))

    def subscribe(self, filters: Any) -> asyncio.Future[list[int]]:
        return asyncio.get_running_loop().create_future()

    def unsubscribe(self, patterns: Any) -> asyncio.Future[list[int]]:
        return asyncio.get_running_loop().create_future()


def _host() -> tuple[SessionHost, _Client]:
    config = HostConfig(broker="mqtt://127.0.0.1", documents=DOCUMENTS, topic_prefix="fp", client_id="me")
    host = SessionHost(config, load_documents(DOCUMENTS))
    host._loop = asyncio.get_running_loop()
    host._clock = AsyncioClock(host._loop)
    client = host.connection.client = _Client()  # type: ignore[assignment]
    return host, client


def _message(topic: str, payload: bytes = b"") -> mqtt5.PublishPacket:
    return mqtt5.PublishPacket(topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=1)


def _answers(client: _Client) -> list[tuple[str, Any]]:
    # A pong's count grows with every ping: what it echoes is what compares.
    out = []
    for topic, payload in client.published:
        body = json.loads(payload) if payload else None
        out.append((topic, body["echo"] if topic.endswith("/pong") else body))
    client.published.clear()
    return out


TOPICS = [
    "fp/sessions/s1/events/ping",
    "fp/sessions/s1/events/",
    "fp/sessions/s1/event/ping",
    "fp/sessions/s1",
    "fp/sessions//events/ping",
    "fp/sessions/nobody/events/ping",
    "fp/sessions/s1/events/error.x",
    "fp/sessions/s1/events/done.state.x",
    "fp/sessions/s1/events/errors",
    "fp/sessions/s1/events/a/b",
    "fp/sessions/s1/events/" + "p" * 400,
    "fp/other",
]


def test_an_event_topic_is_answered_alike_the_first_time_and_when_it_was_seen() -> None:
    async def scenario() -> None:
        host, client = _host()
        host._on_message(_message("fp/start", b'{"document": "pingpong", "session": "s1"}'))
        _answers(client)
        seen: list[str] = []
        for topic in TOPICS:
            fresh, fresh_client = _host()
            fresh._on_message(_message("fp/start", b'{"document": "pingpong", "session": "s1"}'))
            _answers(fresh_client)
            fresh._on_message(_message(topic, b'{"n": 1}'))
            first = _answers(fresh_client)
            seen += [body["error"] if t == "fp/errors" else t for t, body in first]
            for _ in range(2):
                host._on_message(_message(topic, b'{"n": 1}'))
                assert _answers(client) == first, topic
        # Every kind of answer was compared.
        assert {"fp/sessions/s1/pong", "bad-topic", "reserved-event", "unknown-session"} <= set(seen)
        # Kept: topics of running sessions only, none longer than 320 characters.
        assert "fp/sessions/s1/events/ping" in host._event_topics
        assert "fp/sessions/nobody/events/ping" not in host._event_topics
        assert not any(len(t) > 320 for t in host._event_topics)
        host.sessions["s1"].cancel()
        await asyncio.sleep(0)
        _answers(client)
        host._on_message(_message("fp/sessions/s1/events/ping", b'{"n": 2}'))
        assert [a["error"] for _, a in _answers(client)] == ["unknown-session"]

    asyncio.run(scenario())


def test_kept_event_topics_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing, "_TOPICS_KEPT", 3)

    async def scenario() -> None:
        host, client = _host()
        for i in range(10):
            host._on_message(_message("fp/start", b'{"document": "pingpong", "session": "s%d"}' % i))
        _answers(client)
        for _ in range(2):
            for i in range(10):
                host._on_message(_message(f"fp/sessions/s{i}/events/ping", b"%d" % i))
                assert len(host._event_topics) <= 3
        assert _answers(client) == [(f"fp/sessions/s{i}/pong", i) for i in range(10)] * 2

    asyncio.run(scenario())


def test_a_kept_event_topic_reaches_the_next_session_that_takes_the_id() -> None:
    async def scenario() -> None:
        host, client = _host()
        topic = "fp/sessions/s1/events/ping"
        host._on_message(_message("fp/start", b'{"document": "pingpong", "session": "s1"}'))
        for n in (1, 2):
            host._on_message(_message(topic, b"%d" % n))
        assert topic in host._event_topics
        first = host.sessions["s1"]
        first.cancel()
        await asyncio.sleep(0)
        assert "s1" not in host.sessions
        _answers(client)
        host._on_message(_message(topic, b"3"))
        assert [a["error"] for _, a in _answers(client)] == ["unknown-session"]
        host._on_message(_message("fp/start", b'{"document": "pingpong", "session": "s1"}'))
        second = host.sessions["s1"]
        assert second is not first
        _answers(client)
        host._on_message(_message(topic, b"4"))
        # The new session answers, with a count of its own pings only.
        assert [(t, json.loads(p)) for t, p in client.published] == [
            ("fp/sessions/s1/pong", {"label": "pingpong", "count": 1, "echo": 4})
        ]

    asyncio.run(scenario())


# ---------------------------------------------------------------- validate


def _reference_validate(value: Any) -> None:
    """The rules of ``_quickjs.validate`` as a walk with a budget list and a set of ancestors."""
    budget = [qjs.MAX_VALUES]

    def walk(v: Any, depth: int, path: set[int]) -> None:
        t = type(v)
        budget[0] -= 1
        if budget[0] < 0:
            raise ValueError(f"value has more than {qjs.MAX_VALUES} parts")
        if v is None or t is bool or t is float:
            return
        if t is int:
            if not (-(1 << 53) <= v <= (1 << 53)):
                try:
                    str(v)
                except ValueError:
                    raise ValueError("integer has too many digits") from None
            return
        if isinstance(v, str):
            return
        if isinstance(v, (list, tuple, dict)):
            if depth >= qjs.MAX_DEPTH:
                raise ValueError(f"value nests deeper than {qjs.MAX_DEPTH} levels")
            if id(v) in path:
                raise ValueError("value contains itself (a cycle)")
            path.add(id(v))
            if isinstance(v, dict):
                for key, item in v.items():
                    if not isinstance(key, str):
                        raise ValueError(f"object keys must be strings, not {type(key).__name__}")
                    walk(item, depth + 1, path)
            else:
                for item in v:
                    walk(item, depth + 1, path)
            path.discard(id(v))
            return
        if isinstance(v, int):
            walk(int(v), depth, path)
            return
        if isinstance(v, float):
            return
        raise ValueError(f"a {t.__name__} cannot be an ECMAScript value")

    walk(value, 0, set())


def _chain(depth: int, *, back_to: int | None = None, leaf: Any = 1) -> list[Any]:
    """Lists nested ``depth`` deep; the innermost holds ``leaf``, or the list at ``back_to`` (a cycle)."""
    lists: list[list[Any]] = [[]]
    for _ in range(depth - 1):
        inner: list[Any] = []
        lists[-1].append(inner)
        lists.append(inner)
    lists[-1].append(lists[back_to] if back_to is not None else leaf)
    return lists[0]


class _Flag(enum.IntEnum):
    ON = 1


class _Text(str):
    pass


class _Real(float):
    pass


def _validate_cases() -> list[Any]:
    shared = [1, 2]
    deep_shared = _chain(40)
    cases: list[Any] = [
        None,
        True,
        1.5,
        math.nan,
        "x",
        _Text("t"),
        _Real(2.5),
        _Flag.ON,
        2**53,
        -(2**53),
        2**53 + 1,
        -(2**53) - 1,
        2**64,
        -(2**64),
        10**5000,
        [shared, shared, {"a": shared}],
        [deep_shared, deep_shared],
        (1, (2, (3,))),
        {"a": {"b": [None, True, {"c": "d"}]}},
        {1: "x"},
        {"a": {2.5: 1}},
        [object()],
        {"f": len},
        b"bytes",
        [[1] * 10] * 10,
        [1] * (qjs.MAX_VALUES - 1),
        [1] * qjs.MAX_VALUES,
        _chain(qjs.MAX_DEPTH),
        _chain(qjs.MAX_DEPTH + 1),
    ]
    for depth in (1, 2, 31, 32, 33, 34, 40, 64, 500):
        for back in {0, depth // 2, depth - 1}:
            cases.append(_chain(depth, back_to=back))
    wide: list[Any] = [1] * 600_000
    wide.append(wide)
    cases.append(wide)
    d: dict[str, Any] = {}
    d["self"] = d
    cases.append(d)
    return cases


@pytest.mark.parametrize("value", _validate_cases(), ids=lambda v: type(v).__name__)
def test_validate_says_what_the_reference_walk_says(value: Any) -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + 2 * qjs.MAX_DEPTH)  # the reference recurses once per level
    try:
        _reference_validate(value)
        expected: Any = None
    except ValueError as exc:
        expected = str(exc)
    finally:
        sys.setrecursionlimit(limit)
    try:
        qjs.validate(value)
        got: Any = None
    except ValueError as exc:
        got = str(exc)
    assert got == expected
