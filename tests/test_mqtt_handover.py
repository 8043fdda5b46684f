"""A host that stops cleanly hands its share of start requests to the others."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import mqtt5
import pytest

from orsguard.clock import AsyncioClock
from orsguard.host import HostConfig, SessionHost, load_documents
from tests.mqtt_support import DOCUMENTS, HostProcess, Mosquitto, Peer


@pytest.mark.slow
def test_clean_stop_mid_stream_loses_no_start_request(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    hosts: list[HostProcess] = []
    try:
        for name in ("ho-a", "ho-b"):
            hosts.append(HostProcess(broker, tmp_path, client_id=name, extra=["--topic-prefix", "ho"]))
        leaving, staying = hosts
        total = 100

        async def scenario() -> dict[str, str]:
            loop = asyncio.get_running_loop()
            async with Peer(broker.port, "t-handover", ["ho/sessions/+/started", "ho/errors"]) as peer:
                stopped = None
                for i in range(total):
                    if i == total // 3:
                        # Stopped while requests keep coming, some of them
                        # already routed to it and waiting in its queue.
                        stopped = loop.run_in_executor(None, leaving.stop)
                    await peer.publish("ho/start", {"document": "greeter", "session": f"h{i}"})
                    await asyncio.sleep(0.005)
                assert stopped is not None
                assert await stopped == 0, leaving.tail()
                owners: dict[str, str] = {}

                def collect() -> bool:
                    for topic, body in peer.messages:
                        if topic.endswith("/started"):
                            owners[body["session"]] = body["host"]
                    return len(owners) == total

                deadline = loop.time() + 30
                while not collect() and loop.time() < deadline:
                    await asyncio.sleep(0.1)
                assert not [m for m in peer.messages if m[0] == "ho/errors"]
                return owners

        owners = asyncio.run(scenario())
        missing = sorted(set(range(total)) - {int(sid[1:]) for sid in owners})
        assert not missing, f"{len(missing)} start requests unanswered: {missing}"
        assert set(owners.values()) == {"ho-a", "ho-b"}
        assert staying.alive
    finally:
        statuses = [host.stop() for host in hosts]
        broker.stop()
    assert statuses == [0, 0]


def test_handed_back_requests_keep_their_response_topic(tmp_path: Path) -> None:
    """A request held by a stopping host is published again with its MQTT 5 properties."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    hosts: list[HostProcess] = []
    try:
        for name in ("rt-a", "rt-b"):
            hosts.append(HostProcess(broker, tmp_path, client_id=name, extra=["--topic-prefix", "rt"]))

        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            async with Peer(broker.port, "t-rt", ["replies/rt/#"]) as peer:
                stopped = loop.run_in_executor(None, hosts[0].stop)
                for i in range(40):
                    props = Properties(PacketTypes.PUBLISH)
                    props.ResponseTopic = f"replies/rt/{i}"
                    props.CorrelationData = b"c%d" % i
                    await peer.publish("rt/start", {"document": "greeter", "session": f"r{i}"}, properties=props)
                assert await stopped == 0
                for i in range(40):
                    _, reply = await peer.expect(lambda t, p, i=i: t == f"replies/rt/{i}", timeout=20)
                    assert reply["session"] == f"r{i}"

        asyncio.run(scenario())
    finally:
        for host in hosts:
            host.stop()
        broker.stop()


class FakeClient:
    """Stands in for MqttClient in-process; acknowledgements come when the test says."""

    connected = True

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, Any] | None]] = []
        self.requests: list[tuple[str, list[Any], asyncio.Future[list[int]]]] = []
        self.unacknowledged = 0

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, properties: Any = None) -> None:
        self.published.append((topic, payload, properties))

    def _request(self, kind: str, items: Any) -> asyncio.Future[list[int]]:
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self.requests.append((kind, list(items), future))
        return future

    def subscribe(self, filters: Any) -> asyncio.Future[list[int]]:
        return self._request("subscribe", [f.pattern for f in filters])

    def unsubscribe(self, patterns: Any) -> asyncio.Future[list[int]]:
        return self._request("unsubscribe", patterns)

    async def wait_acknowledged(self, timeout: float) -> bool:
        return True

    async def disconnect(self, *, session_expiry: int | None = None) -> None:
        self.published.append(("DISCONNECT", b"", {"session_expiry": session_expiry}))


async def until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not met")


def host_on_fake_client() -> tuple[SessionHost, FakeClient]:
    """A host (prefix ``hb``, client id ``me``) on the running loop, its broker a FakeClient."""
    config = HostConfig(broker="mqtt://127.0.0.1", documents=DOCUMENTS, topic_prefix="hb", client_id="me")
    host = SessionHost(config, load_documents(DOCUMENTS))
    host._loop = asyncio.get_running_loop()
    host._clock = AsyncioClock(host._loop)
    client = host.connection.client = FakeClient()  # type: ignore[assignment]
    return host, client


def start_packet(sid: str, **props: Any) -> mqtt5.PublishPacket:
    body = json.dumps({"document": "greeter", "session": sid}).encode()
    return mqtt5.PublishPacket("hb/start", body, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=1, **props)


def test_start_requests_arriving_while_stopping_are_handed_back_with_their_properties() -> None:
    async def scenario() -> None:
        host, client = host_on_fake_client()
        host._on_message(start_packet("before"))
        assert "before" in host.sessions
        shutdown = asyncio.get_running_loop().create_task(host._shutdown(client))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        # Leaving the start group is under way: a request routed here now is held...
        kinds = [(kind, items) for kind, items, _ in client.requests]
        assert ("unsubscribe", [host.share_filter]) in kinds
        held = start_packet("held", response_topic="replies/x", correlation_data=b"42")
        host._on_message(held)
        assert "held" not in host.sessions
        assert not [p for p in client.published if p[0] == "hb/start"]
        # ...and published again for the other hosts once the group is left.
        for _, _, future in client.requests:
            future.set_result([0])
        await until(lambda: any(p[0] == "hb/drain/me" for p in client.published))
        handed = [p for p in client.published if p[0] == "hb/start"]
        assert handed == [
            ("hb/start", held.payload, {"response_topic": "replies/x", "correlation_data": b"42"}),
        ]
        # A request still in the queue behind the drain marker goes the same way.
        host._on_message(start_packet("late"))
        drain = next(p for p in client.published if p[0] == "hb/drain/me")
        host._on_message(mqtt5.PublishPacket("hb/drain/me", drain[1], qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=2))
        await asyncio.wait_for(shutdown, 5)
        assert [json.loads(p[1])["session"] for p in client.published if p[0] == "hb/start"] == ["held", "late"]
        # The running session was cancelled and reported; the broker session ended.
        ended = [json.loads(p[1]) for p in client.published if p[0] == "hb/sessions/before/ended"]
        assert ended and ended[0]["reason"] == "cancelled"
        assert client.published[-1] == ("DISCONNECT", b"", {"session_expiry": 0})

    asyncio.run(scenario())


def test_an_event_for_a_session_that_has_ended_is_answered() -> None:
    async def scenario() -> None:
        host, client = host_on_fake_client()
        host._on_message(start_packet("gone"))
        bye = mqtt5.PublishPacket("hb/sessions/gone/events/bye", b"", qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=3)
        host._on_message(bye)
        # The unsubscribe is not yet through: the broker still routes one more.
        host._on_message(bye)
        errors = [json.loads(p[1]) for p in client.published if p[0] == "hb/errors"]
        assert [(e["error"], e["session"]) for e in errors] == [("unknown-session", "gone")]
        await asyncio.sleep(0)
        assert ("unsubscribe", ["hb/sessions/gone/events/#"]) in [(k, i) for k, i, _ in client.requests]

    asyncio.run(scenario())
