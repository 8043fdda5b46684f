"""The MQTT session host against a real Mosquitto, as separate processes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import orsguard
from orsguard.host.payload import RequestError, loads
from orsguard.ioprocessors.mqtt import MqttEventIOProcessor
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


@pytest.fixture(scope="module")
def host(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    process = HostProcess(broker, tmp_path_factory.mktemp("host"), client_id="host-a", metrics_port=free_port())
    yield process
    assert process.stop() == 0, process.tail()


def test_session_round_trip(broker: Mosquitto, host: HostProcess) -> None:
    async def scenario() -> None:
        async with Peer(broker.port, "t-round", ["orsguard/sessions/rt-1/#", "replies/t"]) as peer:
            request = Properties(PacketTypes.PUBLISH)
            request.ResponseTopic = "replies/t"
            request.CorrelationData = b"req-1"
            await peer.publish(
                "orsguard/start",
                {"document": "pingpong", "session": "rt-1", "data": {"label": "hi"}},
                properties=request,
            )
            _, started = await peer.expect(topic_is("orsguard/sessions/rt-1/started"))
            assert started == {"session": "rt-1", "document": "pingpong", "host": "host-a"}
            _, reply = await peer.expect(topic_is("replies/t"))
            assert reply == started

            for seq in (1, 2):
                await peer.publish("orsguard/sessions/rt-1/events/ping", {"seq": seq})
                _, pong = await peer.expect(lambda t, p, seq=seq: t.endswith("/pong") and p["echo"] == {"seq": seq})
                assert pong == {"label": "hi", "count": seq, "echo": {"seq": seq}}

            await peer.publish("orsguard/sessions/rt-1/events/stop")
            _, ended = await peer.expect(topic_is("orsguard/sessions/rt-1/ended"))
            assert ended["reason"] == "final"
            assert ended["final"] == "done"
            assert ended["termination"] is None

    asyncio.run(scenario())


def test_null_datamodel_document(broker: Mosquitto, host: HostProcess) -> None:
    async def scenario() -> None:
        async with Peer(broker.port, "t-null", ["orsguard/sessions/g-1/#"]) as peer:
            await peer.publish("orsguard/start", {"document": "greeter", "session": "g-1"})
            await peer.expect(topic_is("orsguard/sessions/g-1/started"))
            await peer.publish("orsguard/sessions/g-1/events/hello")
            await peer.expect(topic_is("orsguard/sessions/g-1/greeting"))
            await peer.publish("orsguard/sessions/g-1/events/bye")
            _, ended = await peer.expect(topic_is("orsguard/sessions/g-1/ended"))
            assert ended["reason"] == "final"

    asyncio.run(scenario())


def test_limit_violation_ends_session_and_is_counted(broker: Mosquitto, host: HostProcess) -> None:
    assert host.metrics_port is not None
    before = metric(host.metrics_port, "orsguard_limit_violations_total", option="max-microstep-count")

    async def scenario() -> None:
        async with Peer(broker.port, "t-spin", ["orsguard/sessions/spin-1/#"]) as peer:
            await peer.publish("orsguard/start", {"document": "spin", "session": "spin-1"})
            await peer.expect(topic_is("orsguard/sessions/spin-1/started"))
            await peer.publish("orsguard/sessions/spin-1/events/go")
            _, ended = await peer.expect(topic_is("orsguard/sessions/spin-1/ended"))
            assert ended["reason"] == "limit"
            termination = ended["termination"]
            assert termination["option"] == "max-microstep-count"
            assert termination["observed"] > termination["limit"] == 1000
            assert termination["trail"]

    asyncio.run(scenario())
    after = metric(host.metrics_port, "orsguard_limit_violations_total", option="max-microstep-count")
    assert after == before + 1
    assert metric(host.metrics_port, "orsguard_sessions_ended_total", reason="limit") >= 1
    assert metric(host.metrics_port, "orsguard_limit", option="max-microstep-count") == 1000


def test_bad_requests_are_answered_and_the_host_survives(broker: Mosquitto, host: HostProcess) -> None:
    async def scenario() -> None:
        async with Peer(broker.port, "t-bad", ["orsguard/errors", "orsguard/sessions/ok-1/#"]) as p:
            await p.publish("orsguard/start", raw=b"{not json")
            _, error = await p.expect(lambda t, e: e.get("error") == "bad-payload")
            assert error["topic"] == "orsguard/start"

            await p.publish("orsguard/start", {"document": "pingpong", "data": [1]})
            await p.expect(lambda t, e: e.get("error") == "bad-payload" and "data" in e["message"])

            await p.publish("orsguard/start", {"document": "no-such-document"})
            _, error = await p.expect(lambda t, e: e.get("error") == "unknown-document")
            assert error["document"] == "no-such-document"

            await p.publish("orsguard/start", {"document": "pingpong", "session": "a/b"})
            await p.expect(lambda t, e: e.get("error") == "bad-payload" and "session" in e["message"])

            await p.publish("orsguard/start", {"document": "pingpong", "session": "ok-1"})
            await p.expect(topic_is("orsguard/sessions/ok-1/started"))
            await p.publish("orsguard/start", {"document": "pingpong", "session": "ok-1"})
            await p.expect(lambda t, e: e.get("error") == "session-exists")
            await p.publish("orsguard/sessions/ok-1/events/ping", raw=b"\xff")
            await p.expect(lambda t, e: t == "orsguard/errors" and e["topic"].endswith("/ping"))
            await p.publish("orsguard/sessions/ok-1/events/ping", {"seq": 7})
            await p.expect(topic_is("orsguard/sessions/ok-1/pong"))

    asyncio.run(scenario())
    assert host.alive


def test_two_hosts_share_start_requests_and_report_on_shutdown(broker: Mosquitto, tmp_path: Path) -> None:
    hosts: list[HostProcess] = []
    try:
        for i in (1, 2):
            hosts.append(HostProcess(broker, tmp_path, client_id=f"share-{i}", extra=["--topic-prefix", "two"]))

        async def scenario() -> None:
            subscriptions = ["two/sessions/+/#", "two/errors", "two/hosts/+"]
            async with Peer(broker.port, "t-two", subscriptions) as peer:
                for i in (1, 2):
                    _, status = await peer.expect(topic_is(f"two/hosts/share-{i}"))
                    assert status["status"] == "online"
                    assert "pingpong" in status["documents"]
                count = 20
                for i in range(count):
                    await peer.publish("two/start", {"document": "pingpong", "session": f"s{i}"})
                owners = {}
                for i in range(count):
                    _, started = await peer.expect(topic_is(f"two/sessions/s{i}/started"))
                    owners[started["session"]] = started["host"]
                assert set(owners.values()) == {"share-1", "share-2"}
                # Each event reaches only the owner: the other host would
                # answer "unknown-session" on the error topic if it heard it.
                for i in range(count):
                    await peer.publish(f"two/sessions/s{i}/events/ping", {"seq": i})
                for i in range(count):
                    await peer.expect(topic_is(f"two/sessions/s{i}/pong"))
                assert not [m for m in peer.messages if m[0] == "two/errors"]

                # Stopping a host cancels its sessions and says so; a clean
                # stop also deletes the retained status.
                loop = asyncio.get_running_loop()
                statuses = await asyncio.gather(*(loop.run_in_executor(None, h.stop) for h in hosts))
                assert statuses == [0, 0], [h.tail() for h in hosts]
                for i in range(count):
                    _, ended = await peer.expect(topic_is(f"two/sessions/s{i}/ended"))
                    assert ended["reason"] == "cancelled"
                for i in (1, 2):
                    await peer.expect(lambda t, p, i=i: t == f"two/hosts/share-{i}" and p is None)

        asyncio.run(scenario())
    finally:
        for host in hosts:
            host.stop()


@pytest.mark.slow
def test_broker_restart_loses_no_qos1_event(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    try:
        host = HostProcess(broker, tmp_path, client_id="restart-host", extra=["--topic-prefix", "r"])
    except BaseException:
        broker.stop()
        raise
    total = 300
    try:

        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            async with Peer(broker.port, "t-restart", ["r/sessions/+/#"]) as peer:
                await peer.publish("r/start", {"document": "pingpong", "session": "x"})
                await peer.expect(topic_is("r/sessions/x/started"))
                restart = None
                for seq in range(total):
                    if seq == total // 3:
                        # The broker goes away mid-stream, in another thread so
                        # that this client keeps trying to publish meanwhile.
                        restart = loop.run_in_executor(None, broker.restart, 0.5)
                    await peer.publish("r/sessions/x/events/ping", {"seq": seq})
                    await asyncio.sleep(0.002)
                assert restart is not None
                await restart
                seen: set[int] = set()

                def collect() -> bool:
                    seen.update(p["echo"]["seq"] for t, p in peer.messages if t == "r/sessions/x/pong")
                    return len(seen) == total

                deadline = loop.time() + 40
                while not collect() and loop.time() < deadline:
                    await asyncio.sleep(0.1)
                missing = sorted(set(range(total)) - seen)

                assert not missing, f"{len(missing)} events lost: {missing[:20]}"
                assert peer.reconnects >= 1

        asyncio.run(scenario())
        assert host.alive, host.tail()
        assert broker.process is not None
        assert broker.process.poll() is None, f"the broker died: {broker.process.returncode}\n{broker.tail()}"
        log = host.log.read_text()
        assert "connection lost" in log
        # The broker kept the host's session (and its queued events) across the restart.
        assert "broker session resumed" in log
    finally:
        status = host.stop()
        broker.stop()
    assert status == 0, host.tail()


def test_broker_crash_without_persistence_host_comes_back_and_serves(tmp_path: Path) -> None:
    # A broker without persistence that is killed forgets every subscription and queued
    # event: QoS 1 cannot bring back what it had acknowledged (docs/operations.md). What
    # the host must do is reconnect at once, subscribe again, and serve its running
    # sessions and new ones with nothing lost from then on.
    broker = Mosquitto(tmp_path / "broker", persistence=False)
    broker.start()
    try:
        host = HostProcess(broker, tmp_path, client_id="crash-host", extra=["--topic-prefix", "c"])
    except BaseException:
        broker.stop()
        raise
    try:

        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            async with Peer(broker.port, "t-crash", ["c/sessions/+/#"]) as peer:
                await peer.publish("c/start", {"document": "pingpong", "session": "old"})
                await peer.expect(topic_is("c/sessions/old/started"))
                await loop.run_in_executor(None, broker.crash)
                await loop.run_in_executor(None, broker.start)
                # Wait until the host is back: a start request is answered again.
                deadline = loop.time() + 30
                while not any(t == "c/sessions/new/started" for t, _ in peer.messages):
                    assert loop.time() < deadline, f"the host did not come back\n{host.tail()}"
                    await peer.publish("c/start", {"document": "pingpong", "session": "new"})
                    await asyncio.sleep(0.2)
                total = 100
                for seq in range(total):
                    for sid in ("old", "new"):
                        await peer.publish(f"c/sessions/{sid}/events/ping", {"seq": seq})

                def seen(sid: str) -> set[int]:
                    return {p["echo"]["seq"] for t, p in peer.messages if t == f"c/sessions/{sid}/pong"}

                deadline = loop.time() + 30
                while (len(seen("old")) < total or len(seen("new")) < total) and loop.time() < deadline:
                    await asyncio.sleep(0.1)
                assert seen("old") == set(range(total)), f"old session lost {total - len(seen('old'))} events"
                assert seen("new") == set(range(total)), f"new session lost {total - len(seen('new'))} events"

        asyncio.run(scenario())
        assert host.alive, host.tail()
        assert "connection lost" in host.log.read_text()
    finally:
        status = host.stop()
        broker.stop()
    assert status == 0, host.tail()


def test_sighup_reloads_limits_for_running_and_new_sessions(broker: Mosquitto, tmp_path: Path) -> None:
    options = tmp_path / "ors.cfg"
    options.write_text("[scxml]\nmax-microstep-count=1000\n[orchestration]\nsend-retries=2\n")
    metrics_port = free_port()
    host = HostProcess(
        broker,
        tmp_path,
        client_id="reload-host",
        metrics_port=metrics_port,
        extra=["--topic-prefix", "hup", "--options", str(options)],
    )
    try:

        async def spin(peer: Peer, sid: str) -> dict[str, object]:
            await peer.publish(f"hup/sessions/{sid}/events/go")
            _, ended = await peer.expect(topic_is(f"hup/sessions/{sid}/ended"))
            return ended["termination"]

        async def scenario() -> None:
            async with Peer(broker.port, "t-hup", ["hup/sessions/+/#"]) as peer:
                for sid in ("before", "running"):
                    await peer.publish("hup/start", {"document": "spin", "session": sid})
                    await peer.expect(topic_is(f"hup/sessions/{sid}/started"))
                assert (await spin(peer, "before"))["limit"] == 1000

                options.write_text("[scxml]\nmax-microstep-count=50\n")
                host.signal(signal.SIGHUP)
                host.wait_for_log("options reloaded")
                assert metric(metrics_port, "orsguard_limit", option="max-microstep-count") == 50
                # A session started before the reload uses the new limit too.
                assert (await spin(peer, "running"))["limit"] == 50

                # A broken file is reported and changes nothing.
                options.write_text("[scxml]\nmax-microstep-count=lots\n")
                host.signal(signal.SIGHUP)
                host.wait_for_log("not reloaded")
                await peer.publish("hup/start", {"document": "spin", "session": "after"})
                await peer.expect(topic_is("hup/sessions/after/started"))
                assert (await spin(peer, "after"))["limit"] == 50

        asyncio.run(scenario())
        assert host.alive
    finally:
        assert host.stop() == 0, host.tail()


# -- the MQTT Event I/O processor on its own (no broker) ---------------------

SENDER = """<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" datamodel="ecmascript" initial="s">
  <datamodel><data id="errors" expr="[]"/></datamodel>
  <state id="s">
    <transition event="go">
      <send event="out" type="mqtt" targetexpr="_event.data.target"><param name="n" expr="1"/></send>
    </transition>
    <transition event="error.communication">
      <script>errors.push(_event.data ? _event.data.reason : "sync")</script>
      <send event="seen" type="mqtt" target="log/errors"><param name="count" expr="errors.length"/></send>
    </transition>
  </state>
</scxml>"""


def processor_session(publish: Callable[..., None], retries: int = 2) -> tuple[Any, MqttEventIOProcessor]:
    processor = MqttEventIOProcessor(publish, topic_prefix="pfx", send_retries=retries, retry_delay=0.001)
    session = orsguard.Session(orsguard.load(SENDER), ioprocessors=[processor], session_id="me")
    session.start()
    return session, processor


def test_processor_resolves_targets_and_publishes_json() -> None:
    sent: list[tuple[str, bytes]] = []
    session, processor = processor_session(lambda topic, payload, props: sent.append((topic, payload)))
    for target in ("./out", "./", "a/b/", "pfx/sessions/other/events/x"):
        session.send("go", {"target": target})
    assert sent == [
        ("pfx/sessions/me/out", b'{"n":1}'),
        ("pfx/sessions/me/out", b'{"n":1}'),
        ("a/b/out", b'{"n":1}'),
        ("pfx/sessions/other/events/x", b'{"n":1}'),
    ]
    assert processor.location(session) == "pfx/sessions/me/events"


def test_processor_rejects_wildcard_targets_at_once() -> None:
    sent: list[tuple[str, bytes]] = []
    session, _ = processor_session(lambda topic, payload, props: sent.append((topic, payload)))
    session.send("go", {"target": "a/+/b"})
    # error.communication was raised inside the session, which then reported it.
    assert sent == [("log/errors", b'{"count":1}')]


def test_processor_encodes_data_as_json_and_refuses_what_is_not() -> None:
    sent: list[bytes] = []
    processor = MqttEventIOProcessor(lambda topic, payload, props: sent.append(payload), topic_prefix="pfx")
    me = SimpleNamespace(session_id="me")

    def send(data: Any) -> None:
        processor.send(me, SimpleNamespace(name="out", data=data, sendid=None), "./")

    looped: list[Any] = []
    looped.append(looped)
    for bad in (float("nan"), {"x": [float("inf")]}, {"f": object()}, looped, {1j: 2}):
        with pytest.raises(orsguard.CommunicationError, match="not JSON"):
            send(bad)
    # A refused value leaves nothing behind: the same list is encoded fine once it holds no cycle.
    looped.clear()
    send({"list": looped, "nested": looped, "text": "é\u2028", "n": 2**60, "f": 1.5, "none": None})
    send(None)
    assert sent == [
        b'{"list":[],"nested":[],"text":"\\u00e9\\u2028","n":1152921504606846976,"f":1.5,"none":null}',
        b"null",
    ]


def test_event_payload_numbers_are_checked_however_they_are_written() -> None:
    assert loads(b'{"n":12345,"f":1.5,"t":true,"s":"NaN Infinity 1e999"}') == {
        "n": 12345,
        "f": 1.5,
        "t": True,
        "s": "NaN Infinity 1e999",
    }
    big = loads(b"[9007199254740993, 123456789012345678901234567890]")
    assert big == [9007199254740992.0, 1.2345678901234568e29] and all(type(v) is float for v in big)
    assert loads(b"[1E3, 2e-3, 9007199254740992]") == [1000.0, 0.002, 9007199254740992]
    assert loads(b' \n{"a": [1, "x"]}\t') == {"a": [1, "x"]}
    assert loads(b'"text"') == "text"
    for broken, where in ((b'{"a":1} x', "Extra data"), (b'{"a":1', "Expecting"), (b" ", "Expecting value")):
        with pytest.raises(RequestError, match=where):
            loads(broken)
    for bad in (b"[1" + b"0" * 400 + b"]", b"[1E400]", b"[-1e999]", b"[NaN]", b"[-Infinity]", b'{"a": Infinity}'):
        with pytest.raises(RequestError, match="beyond the double range|is not JSON"):
            loads(bad)


def test_processor_retries_a_refused_publish_then_reports_it() -> None:
    attempts: list[str] = []

    def refuse(topic: str, payload: bytes, props: object) -> None:
        attempts.append(topic)
        if topic != "log/errors":
            raise RuntimeError("queue full")

    async def scenario() -> list[str]:
        session, processor = processor_session(refuse, retries=2)
        session.send("go", {"target": "t/x"})
        await processor.drain()
        return attempts

    assert asyncio.run(scenario()) == ["t/x", "t/x", "t/x", "log/errors"]


def test_a_broken_document_stops_the_host_at_start_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "good.scxml").write_text((DOCUMENTS / "greeter.scxml").read_text())
    (tmp_path / "broken.scxml").write_text("<scxml xmlns='http://www.w3.org/2005/07/scxml'><state id='a'>")
    run = subprocess.run(
        [sys.executable, "-m", "orsguard.host", "--mqtt", "mqtt://127.0.0.1:9", "--documents", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 1
    assert "broken.scxml" in run.stderr


def test_bad_broker_url_and_empty_directory_are_refused(tmp_path: Path) -> None:
    def host(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "orsguard.host", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    empty = host("--mqtt", "mqtt://127.0.0.1:9", "--documents", str(tmp_path))
    assert empty.returncode == 1
    assert "no *.scxml documents" in empty.stderr
    bad_url = host("--mqtt", "http://127.0.0.1", "--documents", str(DOCUMENTS))
    assert bad_url.returncode == 2  # a bad argument, as the parser's own errors
    assert "mqtt://HOST[:PORT]" in bad_url.stderr
    not_a_directory = host("--mqtt", "mqtt://127.0.0.1:9", "--documents", str(tmp_path / "missing"))
    assert not_a_directory.returncode == 2
    assert "not a directory" in not_a_directory.stderr


def test_out_of_range_numbers_are_usage_errors() -> None:
    for args, message in (
        (["--session-expiry", "99999999999"], "--session-expiry: 99999999999 is not between 0 and 4294967295"),
        (["--metrics-port", "70000"], "--metrics-port: 70000 is not between 0 and 65535"),
        (["--workers", "-1"], "--workers: -1 is not between"),
        (["--max-sessions", "lots"], "--max-sessions: 'lots' is not a whole number"),
        (["--log-format", "xml"], "--log-format: invalid choice"),
        (["--read-pause", "-1"], "--read-pause: -1 is not between 0 and 1000 ms"),
        (["--read-pause", "nan"], "--read-pause: nan is not between 0 and 1000 ms"),
        (["--read-pause", "soon"], "--read-pause: 'soon' is not a number of milliseconds"),
    ):
        command = [sys.executable, "-m", "orsguard.host", "--mqtt", "mqtt://127.0.0.1:9", "--documents", str(DOCUMENTS)]
        run = subprocess.run([*command, *args], capture_output=True, text=True, timeout=30)
        assert run.returncode == 2, run.stderr
        assert message in run.stderr
        assert "Traceback" not in run.stderr
