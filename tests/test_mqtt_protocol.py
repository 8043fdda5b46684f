"""The host's MQTT 5 client (orsguard.ioprocessors.mqtt_protocol).

Against a scripted broker (an asyncio server speaking through the same
``mqtt5`` codec) for what a real broker does not do on demand: drop a
connection before acknowledging, withhold PINGRESP, announce a small receive
maximum. Against a real Mosquitto for ordering and session handling.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import mqtt5
import pytest

from orsguard.host.connection import run_paced
from orsguard.ioprocessors.mqtt_protocol import ConnectionLost, MqttClient, QueueFull, _plain_publish
from tests.mqtt_support import Mosquitto


class ScriptedBroker:
    """Accepts connections and records every packet; the test decides the answers."""

    def __init__(self, *, receive_max: int = 65535, session_present: bool = True) -> None:
        self.receive_max = receive_max
        self.session_present = session_present
        self.packets: list[tuple[int, Any]] = []  # (connection number, packet)
        self.writers: list[asyncio.StreamWriter] = []
        self.arrived = asyncio.Event()
        self.auto_ack = True
        self.answer_pings = True
        self.answer_subscribes = True
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> ScriptedBroker:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        for writer in self.writers:
            writer.close()
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(self.writers)
        self.writers.append(writer)
        buf = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            buf += chunk
            while buf:
                try:
                    packet, size = mqtt5.read(memoryview(buf))
                except IndexError:
                    break
                buf = buf[size:]
                self.packets.append((number, packet))
                self.arrived.set()
                self._answer(writer, packet)

    def _answer(self, writer: asyncio.StreamWriter, packet: Any) -> None:
        kind = type(packet)
        if kind is mqtt5.ConnectPacket:
            ack = mqtt5.ConnAckPacket(session_present=self.session_present, receive_max=self.receive_max)
            writer.write(ack.write())
        elif kind is mqtt5.PublishPacket and self.auto_ack:
            writer.write(mqtt5.PubAckPacket(packet.packet_id).write())
        elif kind is mqtt5.PingReqPacket and self.answer_pings:
            writer.write(mqtt5.PingRespPacket().write())
        elif kind is mqtt5.SubscribePacket and self.answer_subscribes:
            codes = [mqtt5.SubAckReasonCode.GRANTED_QOS_AT_LEAST_ONCE] * len(packet.topic_filters)
            writer.write(mqtt5.SubAckPacket(packet.packet_id, codes).write())

    def of(self, kind: type, connection: int | None = None) -> list[Any]:
        return [p for n, p in self.packets if type(p) is kind and (connection is None or n == connection)]

    async def wait_for(self, condition: Any, timeout: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out; packets: {self.packets}")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                pass


def client_for(port: int, **kwargs: Any) -> MqttClient:
    kwargs.setdefault("on_message", lambda packet: None)
    return MqttClient("127.0.0.1", port, client_id="c1", **kwargs)


def test_unacknowledged_publishes_are_sent_again_with_dup_after_a_reconnect() -> None:
    async def scenario() -> None:
        async with ScriptedBroker() as broker:
            broker.auto_ack = False
            client = client_for(broker.port, session_expiry=60)
            await client.connect(clean_start=True)
            for i in range(3):
                client.publish("t/x", b"%d" % i)
            await broker.wait_for(lambda: len(broker.of(mqtt5.PublishPacket)) == 3)
            first = broker.of(mqtt5.PublishPacket, 0)
            assert not any(p.duplicate for p in first)
            # The broker acknowledges the first one only, then the line drops.
            broker.writers[0].write(mqtt5.PubAckPacket(first[0].packet_id).write())
            await asyncio.sleep(0.05)
            broker.writers[0].close()
            await asyncio.wait_for(client.wait_closed(), 5)
            assert client.unacknowledged == 2
            client.publish("t/x", b"new")  # queued while disconnected
            broker.auto_ack = True
            connack = await client.connect(clean_start=False)
            assert connack.session_present
            await broker.wait_for(lambda: len(broker.of(mqtt5.PublishPacket, 1)) == 3)
            again = broker.of(mqtt5.PublishPacket, 1)
            assert [(p.payload, p.duplicate) for p in again] == [(b"1", True), (b"2", True), (b"new", False)]
            assert [p.packet_id for p in again[:2]] == [p.packet_id for p in first[1:]]
            assert not broker.of(mqtt5.ConnectPacket)[1].clean_start
            assert await client.wait_acknowledged(5)
            await client.disconnect(session_expiry=0)
            assert broker.of(mqtt5.DisconnectPacket)[0].session_expiry_interval == 0

    asyncio.run(scenario())


def test_receive_maximum_bounds_publishes_in_flight() -> None:
    async def scenario() -> None:
        async with ScriptedBroker(receive_max=2) as broker:
            broker.auto_ack = False
            client = client_for(broker.port, max_queued=5)
            await client.connect(clean_start=True)
            for i in range(5):
                client.publish("t/q", b"%d" % i)
            with pytest.raises(QueueFull):
                client.publish("t/q", b"too many")
            await broker.wait_for(lambda: len(broker.of(mqtt5.PublishPacket)) == 2)
            await asyncio.sleep(0.1)
            assert len(broker.of(mqtt5.PublishPacket)) == 2
            for packet in broker.of(mqtt5.PublishPacket):
                broker.writers[0].write(mqtt5.PubAckPacket(packet.packet_id).write())
            await broker.wait_for(lambda: len(broker.of(mqtt5.PublishPacket)) == 4)
            assert [p.payload for p in broker.of(mqtt5.PublishPacket)] == [b"0", b"1", b"2", b"3"]

    asyncio.run(scenario())


def test_acknowledgements_split_across_reads_or_with_a_reason_code_are_counted() -> None:
    async def scenario() -> None:
        async with ScriptedBroker() as broker:
            broker.auto_ack = False
            client = client_for(broker.port)
            await client.connect(clean_start=True)
            for i in range(3):
                client.publish("t/a", b"%d" % i)
            await broker.wait_for(lambda: len(broker.of(mqtt5.PublishPacket)) == 3)
            first, second, third = (p.packet_id for p in broker.of(mqtt5.PublishPacket))
            plain = mqtt5.PubAckPacket(first).write()
            assert plain == b"\x40\x02" + first.to_bytes(2, "big")
            # Half a PUBACK, then its rest with a whole one and one with a reason code.
            broker.writers[0].write(plain[:3])
            await asyncio.sleep(0.05)
            assert client.unacknowledged == 3
            refused = mqtt5.PubAckPacket(third, reason_code=mqtt5.PubAckReasonCode.NO_MATCHING_SUBSCRIBERS)
            broker.writers[0].write(plain[3:] + mqtt5.PubAckPacket(second).write() + refused.write())
            assert await client.wait_acknowledged(5)
            await client.disconnect()

    asyncio.run(scenario())


def test_packets_larger_than_the_read_buffer_arrive_whole() -> None:
    async def scenario() -> None:
        got: list[tuple[str, bytes]] = []
        async with ScriptedBroker() as broker:
            client = client_for(broker.port, on_message=lambda p: got.append((p.topic, p.payload)))
            await client.connect(clean_start=True)
            big = bytes(range(256)) * 1200  # 300 KB, several times the first read buffer
            stream = b"".join(
                mqtt5.PublishPacket(topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=pid).write()
                for pid, (topic, payload) in enumerate([("t/1", b"a"), ("t/big", big), ("t/2", b"b"), ("t/3", big)], 1)
            )
            # Written in uneven pieces, so reads end inside packets and headers.
            for start in range(0, len(stream), 70_001):
                broker.writers[0].write(stream[start : start + 70_001])
                await asyncio.sleep(0.01)
            await broker.wait_for(lambda: len(broker.of(mqtt5.PubAckPacket)) == 4)
            assert got == [("t/1", b"a"), ("t/big", big), ("t/2", b"b"), ("t/3", big)]
            assert [p.packet_id for p in broker.of(mqtt5.PubAckPacket)] == [1, 2, 3, 4]
            await client.disconnect()

    asyncio.run(scenario())


def test_a_paced_loop_gathers_what_arrives_meanwhile_into_one_read() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        got: list[tuple[bytes, float]] = []
        async with ScriptedBroker() as broker:
            client = client_for(broker.port, on_message=lambda p: got.append((p.payload, loop.time())))
            await client.connect(clean_start=True)
            # After the CONNACK's read no socket is polled for the pause: these wait, then come in one read.
            await asyncio.sleep(0.3)
            for pid, payload in enumerate((b"1", b"2", b"3"), 1):
                message = mqtt5.PublishPacket("t/p", payload, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=pid)
                broker.writers[0].write(message.write())
                await asyncio.sleep(0.02)
            await broker.wait_for(lambda: len(broker.of(mqtt5.PubAckPacket)) == 3)
            assert [payload for payload, _ in got] == [b"1", b"2", b"3"]
            # The first is read at once (after a quiet spell); the next two wait out the pause together.
            assert got[1][1] - got[0][1] >= 0.15
            assert got[2][1] == pytest.approx(got[1][1], abs=0.01)
            # Acknowledgements and the next read still come.
            client.publish("t/out", b"x")
            assert await client.wait_acknowledged(5)
            await client.disconnect()

    run_paced(scenario(), 0.2)


@pytest.mark.parametrize("topic_size", [1, 60, 122, 123, 300, 16_380, 16_381, 60_000])
def test_plain_publishes_are_encoded_as_the_codec_reads_them(topic_size: int) -> None:
    # Sizes around the one-, two- and three-byte remaining lengths; a multi-byte character in the topic.
    topic = "é/" + "t" * topic_size
    payload = b"p" * (topic_size % 7)
    data = _plain_publish(topic.encode(), payload, 4660)
    packet, size = mqtt5.read(data)
    assert size == len(data)
    assert (packet.topic, packet.payload, packet.packet_id, packet.qos) == (topic, payload, 4660, 1)
    assert not packet.retain and not packet.duplicate
    assert data == mqtt5.PublishPacket(topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=4660).write()


@pytest.mark.slow
def test_keepalive_pings_when_idle_and_drops_a_silent_broker() -> None:
    async def scenario() -> None:
        async with ScriptedBroker() as broker:
            client = client_for(broker.port, keepalive=1)
            await client.connect(clean_start=True)
            await broker.wait_for(lambda: broker.of(mqtt5.PingReqPacket), timeout=5)
            assert client.connected
            broker.answer_pings = False
            # A broker that stops answering is given up within a few keep-alives.
            await asyncio.wait_for(client.wait_closed(), 10)
            assert not client.connected

    asyncio.run(scenario())


def test_subscribe_fails_at_once_without_a_connection() -> None:
    async def scenario() -> None:
        client = client_for(1)
        future = client.subscribe([mqtt5.TopicFilter("a/#")])
        with pytest.raises(ConnectionLost):
            await future

    asyncio.run(scenario())


def test_incoming_qos1_is_acknowledged_after_the_handler(tmp_path: Path) -> None:
    """Against Mosquitto: a SUBSCRIBE not waited for is in place for the next publish."""
    broker = Mosquitto(tmp_path)
    broker.start()
    try:

        async def scenario() -> None:
            received: list[tuple[str, bytes]] = []
            client = MqttClient(
                "127.0.0.1",
                broker.port,
                client_id="order",
                on_message=lambda p: received.append((p.topic, p.payload)),
                session_expiry=60,
            )
            await client.connect(clean_start=True)
            for i in range(50):
                client.subscribe([mqtt5.TopicFilter(f"o/{i}", max_qos=mqtt5.QoS.AT_LEAST_ONCE)])
                client.publish(f"o/{i}", b"%d" % i)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while len(received) < 50 and loop.time() < deadline:
                await asyncio.sleep(0.01)
            assert received == [(f"o/{i}", b"%d" % i) for i in range(50)]
            assert await client.wait_acknowledged(5)
            await client.disconnect(session_expiry=0)
            # DISCONNECT with expiry 0 ended the broker session.
            again = MqttClient("127.0.0.1", broker.port, client_id="order", on_message=lambda p: None)
            connack = await again.connect(clean_start=False)
            assert not connack.session_present
            await again.disconnect()

        asyncio.run(scenario())
    finally:
        broker.stop()


def test_packet_ids_wrap_around_and_skip_those_still_in_flight() -> None:
    async def scenario() -> None:
        async with ScriptedBroker() as broker:
            broker.auto_ack = False
            client = client_for(broker.port)
            await client.connect(clean_start=True)
            client.publish("t/w", b"a")  # id 1 stays unacknowledged
            await broker.wait_for(lambda: len(broker.of(mqtt5.PublishPacket)) == 1)
            client._pid = 65534  # as after 65,533 more publishes, all acknowledged
            for payload in (b"b", b"c", b"d"):
                client.publish("t/w", payload)
            await broker.wait_for(lambda: len(broker.of(mqtt5.PublishPacket)) == 4)
            ids = [p.packet_id for p in broker.of(mqtt5.PublishPacket)]
            assert ids == [1, 65535, 2, 3]
            assert client.unacknowledged == 4

    asyncio.run(scenario())


def test_incoming_publishes_are_acknowledged_by_their_qos_even_when_the_handler_fails() -> None:
    async def scenario() -> None:
        async with ScriptedBroker() as broker:
            seen: list[bytes] = []

            def handler(packet: Any) -> None:
                seen.append(packet.payload)
                if packet.payload == b"boom":
                    raise RuntimeError("handler bug")

            client = client_for(broker.port, on_message=handler)
            await client.connect(clean_start=True)
            writer = broker.writers[0]
            writer.write(
                mqtt5.PublishPacket("i/0", b"zero", qos=mqtt5.QoS.AT_MOST_ONCE).write()
                + mqtt5.PublishPacket("i/1", b"boom", qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=7).write()
                + mqtt5.PublishPacket("i/2", b"two", qos=mqtt5.QoS.EXACTLY_ONCE, packet_id=8).write()
            )
            await broker.wait_for(lambda: broker.of(mqtt5.PubRecPacket))
            assert seen == [b"zero", b"boom", b"two"]
            assert [p.packet_id for p in broker.of(mqtt5.PubAckPacket)] == [7]
            assert [p.packet_id for p in broker.of(mqtt5.PubRecPacket)] == [8]
            await client.disconnect()

    asyncio.run(scenario())


def test_a_publish_skips_the_packet_id_of_a_subscribe_not_yet_acknowledged() -> None:
    async def scenario() -> None:
        async with ScriptedBroker() as broker:
            broker.answer_subscribes = False
            client = client_for(broker.port)
            await client.connect(clean_start=True)
            client._pid = 65534
            pending = client.subscribe([mqtt5.TopicFilter("t/#", max_qos=mqtt5.QoS.AT_LEAST_ONCE)])
            await broker.wait_for(lambda: broker.of(mqtt5.SubscribePacket))
            assert broker.of(mqtt5.SubscribePacket)[0].packet_id == 65535
            client._pid = 65534  # the next publish would take the subscribe's id
            client.publish("t/s", b"a")
            client.publish("t/s", b"b")
            await broker.wait_for(lambda: len(broker.of(mqtt5.PublishPacket)) == 2)
            assert [p.packet_id for p in broker.of(mqtt5.PublishPacket)] == [1, 2]
            assert await client.wait_acknowledged(5)
            assert not pending.done()
            # The SUBACK still finds its request.
            codes = [mqtt5.SubAckReasonCode.GRANTED_QOS_AT_LEAST_ONCE]
            broker.writers[0].write(mqtt5.SubAckPacket(65535, codes).write())
            assert await asyncio.wait_for(pending, 5) == [int(codes[0])]
            await client.disconnect()

    asyncio.run(scenario())
