"""CPU time of the host's own per-event path, in-process: PUBLISH bytes in, pong and PUBACK bytes out.

    python -m benchmarks.bench_host_path                    # 1,000 sessions, 7 pings to a read
    python -m benchmarks.bench_host_path --events 5000 --rounds 1   # under callgrind
    python -m benchmarks.bench_host_path --against DIR      # this tree against the orsguard in DIR

A :class:`~orsguard.host.routing.SessionHost` with its real
:class:`~orsguard.ioprocessors.mqtt_protocol.MqttClient`, whose connection
is a transport that only counts the bytes written (no socket, no event loop
turn): each read hands the client ``--per-read`` QoS 1 PUBLISH packets of
``ping`` events for the ``pingpong`` sessions, taken round robin, together
with the broker's PUBACKs for the pongs of the previous read, as the load
benchmark's broker sends them. Per event that is the path of
``bench_mqtt_load.py`` without the kernel and the loop: MQTT decoding, the
host's topic parsing and JSON decoding, ``Session.send``, the MQTT I/O
processor, the pong's encoding, the PUBACK for the ping, and the write.

Packets are built before the clock starts. Figures are CPU time
(``time.process_time``) per event: best round and median. ``--against DIR``
runs the measurement in child processes, alternately with ``PYTHONPATH=DIR``
and with this tree (``--repeat`` each), and prints both. For instruction
counts run it under ``valgrind --tool=callgrind`` (or ``cachegrind``) twice,
with ``--events N`` and ``--events 2N``, and divide the difference by N:
start-up cancels out. The script reports; it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mqtt5

from orsguard.clock import AsyncioClock
from orsguard.document import load_file
from orsguard.host.config import HostConfig
from orsguard.host.routing import SessionHost
from orsguard.ioprocessors.mqtt_protocol import MqttClient, _Connection

HERE = Path(__file__).resolve().parent
DOCUMENTS = HERE.parent / "examples" / "documents"
PREFIX = "orsguard"


class _Sink:
    """A transport that keeps nothing: counts the bytes the host writes."""

    def __init__(self) -> None:
        self.written = 0
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _publish(topic: str, payload: bytes, pid: int) -> bytes:
    return mqtt5.PublishPacket(topic, payload, qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=pid).write()


class HostPath:
    """A host with ``sessions`` running ``pingpong`` sessions, fed from memory."""

    def __init__(self, sessions: int) -> None:
        self.loop = asyncio.new_event_loop()
        config = HostConfig(broker="mqtt://127.0.0.1:1883", documents=DOCUMENTS, client_id="bench")
        self.host = host = SessionHost(config, {"pingpong": load_file(DOCUMENTS / "pingpong.scxml")})
        client = MqttClient("127.0.0.1", 1883, client_id="bench", on_message=host._on_message)
        self.conn = _Connection(client)
        self.sink = _Sink()
        self.conn.transport = self.sink  # type: ignore[assignment]
        client._conn = self.conn
        client._loop = self.loop
        client.connack = mqtt5.ConnAckPacket()
        client._quota = 65535
        host.connection.client = client
        host._loop = self.loop
        host._clock = AsyncioClock(self.loop)
        self.client = client
        self._pid = 0
        self.sids = [f"s{i}" for i in range(sessions)]
        for sid in self.sids:
            self.feed(_publish(f"{PREFIX}/start", b'{"document":"pingpong","session":"%s"}' % sid.encode(), 1))
        self._settle()
        if len(host.sessions) != sessions:
            raise RuntimeError(f"{len(host.sessions)} of {sessions} sessions started")

    def feed(self, data: bytes) -> None:
        """One read from the broker: ``data`` lands in the client's buffer and is handled."""
        view = self.client._free_space()
        view[: len(data)] = data
        self.client._received(self.conn, len(data))

    def _settle(self) -> None:
        # The broker's acknowledgements for everything published so far; callbacks the setup scheduled.
        self.feed(b"".join(b"\x40\x02" + pid.to_bytes(2, "big") for pid in list(self.client._inflight)))
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()

    def reads(self, events: int, per_read: int, start: int) -> list[tuple[bytes, int]]:
        """``events`` pings in reads of ``per_read``, round robin from session ``start``; each with its PUBACK count."""
        out: list[tuple[bytes, int]] = []
        n = len(self.sids)
        packets = []
        for i in range(events):
            self._pid = self._pid % 65535 + 1
            sid = self.sids[(start + i) % n]
            topic = f"{PREFIX}/sessions/{sid}/events/ping"
            packets.append(_publish(topic, b'{"n":%d}' % (start + i), self._pid))
            if len(packets) == per_read:
                out.append((b"".join(packets), len(packets)))
                packets = []
        if packets:
            out.append((b"".join(packets), len(packets)))
        return out

    def run(self, reads: list[tuple[bytes, int]]) -> int:
        """Feed ``reads``, each with the broker's PUBACKs for the previous read's pongs; events handled."""
        client = self.client
        feed = self.feed
        inflight = client._inflight
        handled = 0
        for data, count in reads:
            acks = b"".join(b"\x40\x02" + pid.to_bytes(2, "big") for pid in inflight)
            feed(acks + data)
            handled += count
        return handled


def measure(sessions: int, per_read: int, events: int, rounds: int) -> list[float]:
    """CPU µs per event of each round."""
    path = HostPath(sessions)
    path.run(path.reads(2 * sessions, per_read, 0))  # warm up: every session once or twice
    samples: list[float] = []
    start = 2 * sessions
    pongs = path.sink.written
    for _ in range(rounds):
        reads = path.reads(events, per_read, start)
        start += events
        gc.collect()
        t = time.process_time()
        handled = path.run(reads)
        samples.append((time.process_time() - t) / handled * 1e6)
    counted: dict[str, Any] = path.host.metrics.__dict__
    if len(path.host.sessions) != sessions or path.sink.written == pongs:
        raise RuntimeError(f"sessions ended or nothing was published ({counted})")
    return samples


def _child(pythonpath: str, args: argparse.Namespace) -> list[float]:
    env = dict(os.environ, PYTHONPATH=pythonpath)
    cmd = [sys.executable, __file__, "--child", "--sessions", str(args.sessions), "--per-read", str(args.per_read)]
    cmd += ["--events", str(args.events), "--rounds", str(args.rounds)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    samples: list[float] = json.loads(out.strip().splitlines()[-1])
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--per-read", type=int, default=7, help="ping PUBLISH packets per read")
    parser.add_argument("--events", type=int, default=20000, help="events per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--against", metavar="DIR", help="another orsguard tree (its orsguard/ built in place)")
    parser.add_argument("--repeat", type=int, default=3, help="child processes per tree with --against")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.sessions, args.per_read, args.events, args.rounds)))
        return 0
    runs: dict[str, list[float]] = {}
    if args.against:
        runs = {"against": [], "this": []}
        for _ in range(args.repeat):  # alternately
            runs["against"] += _child(args.against, args)
            runs["this"] += _child(str(HERE.parent), args)
    else:
        runs = {"this": measure(args.sessions, args.per_read, args.events, args.rounds)}
    print(f"host path, {args.sessions:,} sessions, {args.per_read} pings a read, CPU us per event:")
    for label, samples in runs.items():
        print(f"  {label}: {min(samples):.2f} best, {statistics.median(samples):.2f} median ({len(samples)} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
