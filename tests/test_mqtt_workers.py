"""``orsguard serve --workers N``: N host processes, one metrics endpoint, signals passed on."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from tests.mqtt_support import HostProcess, Mosquitto, Peer, free_port, metric, topic_is


def wait_for_count(host: HostProcess, text: str, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while host.log.read_text(errors="replace").count(text) < count:
        assert host.alive, host.tail()
        assert time.monotonic() < deadline, host.tail()
        time.sleep(0.05)


@pytest.mark.slow
def test_two_workers_share_the_sessions_behind_one_metrics_endpoint(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    options = tmp_path / "ors.cfg"
    options.write_text("[scxml]\nmax-microstep-count=1000\n")
    port = free_port()
    host = HostProcess(
        broker,
        tmp_path,
        client_id="wk",
        metrics_port=port,
        extra=["--topic-prefix", "wk", "--workers", "2", "--options", str(options)],
    )
    try:
        wait_for_count(host, "ready on", 2)
        count = 20

        async def scenario() -> dict[str, str]:
            async with Peer(broker.port, "t-workers", ["wk/sessions/+/#"]) as peer:
                for i in range(count):
                    await peer.publish("wk/start", {"document": "pingpong", "session": f"w{i}"})
                owners = {}
                for i in range(count):
                    _, started = await peer.expect(topic_is(f"wk/sessions/w{i}/started"))
                    owners[started["session"]] = started["host"]
                for i in range(count):
                    await peer.publish(f"wk/sessions/w{i}/events/ping", {"seq": i})
                for i in range(count):
                    await peer.expect(topic_is(f"wk/sessions/w{i}/pong"))
                return owners

        owners = asyncio.run(scenario())
        assert set(owners.values()) == {"wk-1", "wk-2"}
        assert metric(port, "orsguard_workers_up") == 2
        assert metric(port, "orsguard_sessions_started_total") == count
        assert metric(port, "orsguard_sessions_active") == count
        assert metric(port, "orsguard_events_total", queue="external") == count
        # The limit gauge is the workers' common value, not their sum.
        assert metric(port, "orsguard_limit", option="max-microstep-count") == 1000

        options.write_text("[scxml]\nmax-microstep-count=70\n")
        host.signal(signal.SIGHUP)
        wait_for_count(host, "options reloaded", 2)
        assert metric(port, "orsguard_limit", option="max-microstep-count") == 70

        # A worker that dies is started again, under the same client id.
        workers = Path(f"/proc/{host.process.pid}/task/{host.process.pid}/children").read_text().split()
        assert len(workers) == 2
        os.kill(int(workers[0]), signal.SIGKILL)
        wait_for_count(host, "starting it again", 1)
        wait_for_count(host, "ready on", 3)
        assert metric(port, "orsguard_workers_up") == 2
    finally:
        status = host.stop()
        broker.stop()
    assert status == 0, host.tail()
    # SIGTERM reached both workers, which each stopped cleanly.
    assert host.log.read_text().count("left the start group") == 2
