"""Hostile input to the MQTT host, against a real Mosquitto: every bad message is
answered on the error topic and counted, and the host keeps serving."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mqtt_support import (
    DOCUMENTS,
    HostProcess,
    Mosquitto,
    Peer,
    broker_fixture,  # noqa: F401 (the broker fixture)
    free_port,
    metric,
    topic_is,
)

NAN_DOCUMENT = """<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" datamodel="ecmascript" initial="s">
  <state id="s">
    <transition event="go">
      <send event="out" type="mqtt" target="./out"><param name="x" expr="0/0"/></send>
      <send event="inf" type="mqtt" target="./out"><param name="x" expr="1/0"/></send>
    </transition>
    <transition event="error.communication">
      <send event="failed" type="mqtt" target="./failed"/>
    </transition>
  </state>
</scxml>"""


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("documents")
    for path in DOCUMENTS.glob("*.scxml"):
        shutil.copy(path, directory)
    (directory / "nan.scxml").write_text(NAN_DOCUMENT)
    return directory


@pytest.fixture(scope="module")
def host(broker: Mosquitto, documents: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    process = HostProcess(
        broker,
        tmp_path_factory.mktemp("host"),
        client_id="hostile",
        metrics_port=free_port(),
        documents=documents,
        extra=["--topic-prefix", "hx", "--max-payload", "100000"],
    )
    yield process
    assert process.stop() == 0, process.tail()


def rejected(port: int | None, code: str) -> float:
    assert port is not None
    return metric(port, "orsguard_mqtt_rejected_messages_total", code=code)


def error_answer(peer: Peer, code: str, **fields: Any) -> Any:
    def match(topic: str, body: Any) -> bool:
        return (
            topic == "hx/errors"
            and isinstance(body, dict)
            and body.get("error") == code
            and all(body.get(k) == v for k, v in fields.items())
        )

    return match


BAD_STARTS: list[tuple[bytes, str]] = [
    (b"{not json", "bad-payload"),
    (b"\xff\xfe", "bad-payload"),
    (b"[1, 2]", "bad-payload"),
    (b'{"document": 5}', "bad-payload"),
    (b'{"document": "pingpong", "session": 5}', "bad-payload"),
    (b'{"document": "pingpong", "data": "text"}', "bad-payload"),
    (b'{"document": "pingpong", "session": "a/b"}', "bad-payload"),
    (b'{"document": "pingpong", "session": "a+b"}', "bad-payload"),
    (b'{"document": "pingpong", "session": "a#"}', "bad-payload"),
    (b'{"document": "pingpong", "session": ""}', "bad-payload"),
    (json.dumps({"document": "pingpong", "session": "x" * 10_000}).encode(), "bad-payload"),
    (b'{"document": "pingpong", "data": {"n": 1' + b"0" * 400 + b"}}", "bad-payload"),
    (b'{"document": "pingpong", "data": {"n": 1e400}}', "bad-payload"),
    (b'{"document": "pingpong", "data": {"n": NaN}}', "bad-payload"),
    (b'{"document": "pingpong", "data": {"n": -Infinity}}', "bad-payload"),
    (b"[" * 100_000 + b"]" * 100_000, "too-large"),
    (b'{"document": "pingpong", "data": {"x": "' + b"y" * 200_000 + b'"}}', "too-large"),
    (b'{"document": "' + b"z" * 5000 + b'"}', "unknown-document"),
]


def test_bad_start_requests_are_answered_and_counted(broker: Mosquitto, host: HostProcess) -> None:
    codes = {code for _, code in BAD_STARTS}
    before = {code: rejected(host.metrics_port, code) for code in codes}

    async def scenario() -> None:
        async with Peer(broker.port, "t-hx-start", ["hx/errors", "hx/sessions/+/started"]) as peer:
            for n, (payload, code) in enumerate(BAD_STARTS):
                await peer.publish("hx/start", raw=payload)
                _, error = await peer.expect(error_answer(peer, code), timeout=10)
                assert error["topic"] == "hx/start", (n, error)
                peer.messages.clear()
            # Still serving, at once.
            await peer.publish("hx/start", {"document": "pingpong", "session": "alive"})
            await peer.expect(topic_is("hx/sessions/alive/started"))

    asyncio.run(scenario())
    for code in codes:
        expected = sum(1 for _, c in BAD_STARTS if c == code)
        assert rejected(host.metrics_port, code) == before[code] + expected, code
    assert host.alive


def test_bad_events_are_answered_and_the_session_keeps_running(broker: Mosquitto, host: HostProcess) -> None:
    async def scenario() -> None:
        subscriptions = ["hx/errors", "hx/sessions/ev/#"]
        async with Peer(broker.port, "t-hx-events", subscriptions) as peer:
            await peer.publish("hx/start", {"document": "pingpong", "session": "ev"})
            await peer.expect(topic_is("hx/sessions/ev/started"))
            bad = [
                (b"{", "bad-payload"),
                (b"1" + b"0" * 400, "bad-payload"),
                (b"[1e400]", "bad-payload"),
                (b'{"a": NaN}', "bad-payload"),
                (b"x" * 100_001, "too-large"),
            ]
            for payload, code in bad:
                await peer.publish("hx/sessions/ev/events/ping", raw=payload)
                await peer.expect(error_answer(peer, code, session="ev"))
            await peer.publish("hx/sessions/ev/events/error.execution", {"forged": True})
            await peer.expect(error_answer(peer, "reserved-event", session="ev"))
            await peer.publish("hx/sessions/ev/events/done.invoke.x")
            await peer.expect(error_answer(peer, "reserved-event", session="ev"))
            await peer.publish("hx/sessions/ev/events/ping", {"big": 2**60})
            _, pong = await peer.expect(topic_is("hx/sessions/ev/pong"))
            assert pong["count"] == 1  # only the good ping reached the session
            assert float(pong["echo"]["big"]) == float(2**60)  # a double, as in ECMAScript
            await peer.publish("hx/sessions/ev/events/stop")
            await peer.expect(topic_is("hx/sessions/ev/ended"))

    asyncio.run(scenario())
    assert host.alive


def test_published_json_is_always_valid(broker: Mosquitto, host: HostProcess) -> None:
    async def scenario() -> None:
        async with Peer(broker.port, "t-hx-nan", ["hx/sessions/nan-1/#"]) as peer:
            raw: list[bytes] = []
            peer.on_message(lambda topic, body: raw.append(json.dumps(body)) if topic.endswith("/out") else None)
            await peer.publish("hx/start", {"document": "nan", "session": "nan-1"})
            await peer.expect(topic_is("hx/sessions/nan-1/started"))
            await peer.publish("hx/sessions/nan-1/events/go")
            # NaN and Infinity are not JSON: both sends fail in the session
            # (error.communication) instead of going out.
            await peer.expect(topic_is("hx/sessions/nan-1/failed"))
            await peer.expect(
                lambda t, p: (
                    t == "hx/sessions/nan-1/failed"
                    and len([m for m in peer.messages if m[0] == "hx/sessions/nan-1/failed"]) == 2
                )
            )
            assert not [m for m in peer.messages if m[0] == "hx/sessions/nan-1/out"]

    asyncio.run(scenario())


@pytest.mark.slow
def test_ten_thousand_start_requests_at_once(broker: Mosquitto, host: HostProcess) -> None:
    total = 10_000

    async def scenario() -> None:
        subscriptions = ["hx/sessions/+/started", "hx/sessions/+/ended", "hx/errors"]
        async with Peer(broker.port, "t-hx-burst", subscriptions) as peer:
            started: set[str] = set()
            errors: list[Any] = []

            def seen(topic: str, body: Any) -> None:
                if topic.endswith("/started"):
                    started.add(body["session"])
                elif topic == "hx/errors":
                    errors.append(body)

            peer.on_message(seen)
            payloads = [json.dumps({"document": "greeter", "session": f"b{i}"}).encode() for i in range(total)]
            # As fast as the test's client takes them (it keeps 1,000 in flight).
            for i in range(0, total, 500):
                await asyncio.gather(*(peer.publish("hx/start", raw=p) for p in payloads[i : i + 500]))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 120
            while len(started) < total and not errors and loop.time() < deadline:
                await asyncio.sleep(0.2)
            assert not errors, errors[:5]
            assert len(started) == total
            # Each one takes events at once: its subscription was in place
            # before "started" went out.
            for i in (0, total // 2, total - 1):
                await peer.publish(f"hx/sessions/b{i}/events/bye")
                await peer.expect(topic_is(f"hx/sessions/b{i}/ended"))

    asyncio.run(scenario())
    assert host.alive
    assert "connection lost" not in host.log.read_text()


def test_max_sessions_is_answered_on_the_error_topic(broker: Mosquitto, tmp_path: Path) -> None:
    capped = HostProcess(
        broker,
        tmp_path,
        client_id="capped",
        metrics_port=free_port(),
        extra=["--topic-prefix", "cap", "--max-sessions", "3"],
    )
    try:

        async def scenario() -> None:
            async with Peer(broker.port, "t-cap", ["cap/errors", "cap/sessions/+/#"]) as peer:
                for i in range(3):
                    await peer.publish("cap/start", {"document": "greeter", "session": f"c{i}"})
                    await peer.expect(topic_is(f"cap/sessions/c{i}/started"))
                await peer.publish("cap/start", {"document": "greeter", "session": "c3"})
                _, error = await peer.expect(lambda t, p: t == "cap/errors")
                assert error["error"] == "max-sessions"
                assert error["session"] == "c3"
                # A session that ends makes room again.
                await peer.publish("cap/sessions/c0/events/bye")
                await peer.expect(topic_is("cap/sessions/c0/ended"))
                await peer.publish("cap/start", {"document": "greeter", "session": "c3"})
                await peer.expect(topic_is("cap/sessions/c3/started"))

        asyncio.run(scenario())
        assert rejected(capped.metrics_port, "max-sessions") == 1
    finally:
        assert capped.stop() == 0, capped.tail()


def test_a_limit_end_is_one_structured_log_line(broker: Mosquitto, tmp_path: Path) -> None:
    logged = HostProcess(broker, tmp_path, client_id="jsonlog", extra=["--topic-prefix", "jl", "--log-format", "json"])
    try:

        async def scenario() -> None:
            async with Peer(broker.port, "t-jl", ["jl/sessions/+/#"]) as peer:
                await peer.publish("jl/start", {"document": "spin", "session": "sp"})
                await peer.expect(topic_is("jl/sessions/sp/started"))
                await peer.publish("jl/sessions/sp/events/go")
                await peer.expect(topic_is("jl/sessions/sp/ended"))

        asyncio.run(scenario())
        logged.wait_for_log('"option":"max-microstep-count"')
    finally:
        assert logged.stop() == 0
    lines = [json.loads(line) for line in logged.log.read_text().splitlines()]
    ends = [line for line in lines if line.get("option")]
    assert len(ends) == 1
    end = ends[0]
    assert end["level"] == "WARNING"
    assert end["session"] == "sp" and end["document"] == "spin"
    assert end["limit"] == 1000 and end["observed"] > 1000
    assert end["loop"]
    assert "ended by max-microstep-count" in end["message"]
