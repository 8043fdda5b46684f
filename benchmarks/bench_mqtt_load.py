"""Load benchmark: 1,000 sessions driven end to end through a real Mosquitto.

Starts its own broker on a free loopback port and ``--hosts`` host processes
(``python -m orsguard.host``), starts ``--sessions`` sessions of ``--document``
(``pingpong`` by default; ``router`` costs the host about seven times as much
per event, in ECMAScript, so that the host rather than the broker limits the
rate), then measures two things from one load-generator process:

* saturation: pings offered as fast as the pipeline takes them (a bounded
  number in flight), reporting events/s end to end and the latency percentiles;
* fixed rate: pings paced at each ``--rate`` events/s (1,000 and 3,000 by
  default; ``--saturation-only`` for none), reporting p50/p99/max latency; an
  offered rate above what the machine carries shows up as a carried rate below
  it and growing latency.

One "event" is one ping published with QoS 1 to
``<prefix>/sessions/<sid>/events/ping``, processed by its session, which
publishes a pong with QoS 1 echoing the ping's data (any document of
``examples/documents`` that does so can be driven; the run stops with an error
for one that does not); latency is publish to pong arrival, measured in the
generator, a bare-socket MQTT 3.1.1 client on one thread, so that it stays much
cheaper than the system under test.

CPU per event is read from each process's own counters
(``/proc/<pid>/task/*/schedstat``: time on a CPU, all threads, and children
for ``--workers``), separately for the host, the broker and the generator, so
that other work on the machine is not counted in it; with ``--workers N`` the
host's is also given process by process (the supervisor, then each worker).
Beside it, the host's wake-ups per second: the voluntary context switches of all
its threads and workers, each one a sleep of an event loop that something ended.
Other work still shows in CPU per event: a process that shares its CPU with
other work finds its caches cold at every wake-up, so the "other CPUs" column
gives the CPUs that processes outside the benchmark used meanwhile (from
``/proc/stat``).

With two or more CPUs and one host process, the host is pinned to CPU 0 and the
broker and the generator to CPU 1 (``--no-pin`` leaves placement to the kernel);
``--pin-workers`` pins worker ``i`` (or the one host process) to CPU ``i``
(modulo the CPUs) and leaves the broker and the generator unpinned. The table
header states the layout used. ``--workers 1,2 --rounds 3`` measures 1, 2, 1, 2,
1, 2 workers, each on a fresh set-up, and prints a table per run.

Run from the repository root, as a module (it shares the tests' broker and
host helpers, ``tests.mqtt_support``)::

    python -m benchmarks.bench_mqtt_load [--hosts N] [--rate R]...  # prints a table
    python -m benchmarks.bench_mqtt_load --document router --workers 1,2 --rounds 3 --saturation-only

or under pytest-benchmark (``python -m pytest benchmarks/bench_mqtt_load.py``),
which records the figures in ``extra_info``. It reports; it asserts no timings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.mqtt_support import HostProcess, Mosquitto

PREFIX = "bench"
DOCUMENTS = Path(__file__).resolve().parents[1] / "examples" / "documents"


@dataclass
class Result:
    """Figures of one measurement."""

    mode: str
    events: int
    seconds: float
    events_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    lost: int
    host_us: float = 0.0
    broker_us: float = 0.0
    generator_us: float = 0.0
    #: CPUs (on average) the machine spent on processes outside the benchmark meanwhile.
    other_cpus: float = 0.0
    #: Voluntary context switches of the host's threads (all workers) per second.
    host_wakeups_per_s: float = 0.0
    #: Host CPU per event of each host process on its own: with ``--workers N``, the supervisor, then each worker.
    host_processes_us: list[float] = field(default_factory=list)


class Generator:
    """Publishes pings and times the pongs, on the calling thread, over a bare socket.

    A minimal MQTT 3.1.1 client (CONNECT, SUBSCRIBE, QoS 1 PUBLISH and PUBACK;
    nothing else is needed here): the load generator shares the CPUs with the
    broker and the hosts, and paho spends several times more per message than
    this. The hosts speak MQTT 5 through their own client on the ``mqtt5`` codec.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.out = bytearray()
        self.inbuf = bytearray()
        self.next_id = 0
        self.sent: dict[int, int] = {}
        self.latencies_ns: list[int] = []
        self.started: set[str] = set()
        self.connacked = False
        self.subacks = 0
        client_id = f"bench-gen-{os.getpid()}".encode()
        # Protocol "MQTT" level 4, clean session, keepalive 0 (no pings needed).
        body = b"\x00\x04MQTT\x04\x02\x00\x00" + _string(client_id)
        self.out += b"\x10" + _varint(len(body)) + body
        self.pump_until(lambda: self.connacked, 10)
        for topic in (f"{PREFIX}/sessions/+/pong", f"{PREFIX}/sessions/+/started"):
            body = self._packet_id() + _string(topic.encode()) + b"\x01"
            self.out += b"\x82" + _varint(len(body)) + body
        self.pump_until(lambda: self.subacks == 2, 10)

    def _packet_id(self) -> bytes:
        self.next_id = self.next_id % 65535 + 1
        return self.next_id.to_bytes(2, "big")

    def publish(self, topic: bytes, payload: bytes) -> None:
        """Queue a QoS 1 PUBLISH; it goes out at the next :meth:`pump`."""
        body = _string(topic) + self._packet_id() + payload
        self.out += b"\x32" + _varint(len(body)) + body

    def pump(self, timeout: float = 0.0) -> None:
        """Write what is queued, then read and handle what has arrived."""
        if self.out:
            self.sock.sendall(self.out)
            self.out.clear()
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("broker closed the connection")
        self.inbuf += chunk
        self._handle()

    def _handle(self) -> None:
        buf = self.inbuf
        pos = 0
        while len(buf) - pos >= 2:
            length, shift, i = 0, 0, pos + 1
            while True:
                if i >= len(buf):
                    break
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                shift += 7
                i += 1
                if not byte & 0x80:
                    break
            else:
                break
            if byte & 0x80 or len(buf) < i + length:
                break
            kind = buf[pos] >> 4
            packet = bytes(buf[i : i + length])
            if kind == 3:  # PUBLISH, QoS 1 by our subscriptions
                size = int.from_bytes(packet[:2], "big")
                topic = packet[2 : 2 + size]
                if buf[pos] & 0x06:
                    self.out += b"\x40\x02" + packet[2 + size : 4 + size]
                    payload = packet[4 + size :]
                else:
                    payload = packet[2 + size :]
                self._on_message(topic, payload)
            elif kind == 2:
                self.connacked = True
            elif kind == 9:
                self.subacks += 1
            pos = i + length
        del buf[:pos]

    def _on_message(self, topic: bytes, payload: bytes) -> None:
        now = time.monotonic_ns()
        if topic.endswith(b"/pong"):
            try:
                sent = self.sent.pop(json.loads(payload)["echo"]["n"], None)
            except (ValueError, LookupError, TypeError):
                return  # a pong that does not echo a ping answers none
            if sent is not None:
                self.latencies_ns.append(now - sent)
        elif topic.endswith(b"/started"):
            self.started.add(topic.split(b"/")[-2].decode())

    def pump_until(self, done: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            self.pump(0.01)
        return True

    def start_sessions(self, count: int, document: str = "pingpong") -> list[str]:
        sids = [f"s{i}" for i in range(count)]
        for sid in sids:
            self.publish(f"{PREFIX}/start".encode(), json.dumps({"document": document, "session": sid}).encode())
            self.pump()
        if not self.pump_until(lambda: len(self.started) >= count, 60):
            raise RuntimeError(f"only {len(self.started)} of {count} sessions started")
        return sids

    def ping(self, sid: str, seq: int) -> None:
        self.sent[seq] = time.monotonic_ns()
        self.publish(b"%s/sessions/%s/events/ping" % (PREFIX.encode(), sid.encode()), b'{"n":%d}' % seq)

    def answers(self, sid: str, timeout: float) -> bool:
        """True if session ``sid`` answers a ping with a pong echoing its data within ``timeout`` s."""
        self.reset()
        self.ping(sid, 0)
        answered = self.pump_until(lambda: not self.sent, timeout)
        self.reset()
        return answered

    def reset(self) -> None:
        self.sent.clear()
        self.latencies_ns = []

    def in_flight(self) -> int:
        return len(self.sent)

    def wait_drained(self, timeout: float) -> None:
        self.pump_until(lambda: not self.sent, timeout)

    def close(self) -> None:
        self.sock.sendall(bytes(self.out) + b"\xe0\x00")  # DISCONNECT
        self.sock.close()


def tasks(pid: int, children: bool = False) -> list[Path]:
    """The ``/proc`` directories of every thread of ``pid`` (and of its descendants)."""
    found = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found.append(task)
            if children:
                with contextlib.suppress(OSError):
                    for child in (task / "children").read_text().split():
                        found += tasks(int(child), children=True)
    return found


def cpu_ns(pid: int, children: bool = False) -> int:
    """Nanoseconds process ``pid`` (all its threads; its children too) has run on a CPU."""
    total = 0
    for task in tasks(pid, children):
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def wakeups(pid: int, children: bool = False) -> int:
    """Voluntary context switches of process ``pid`` (all its threads; its children too).

    A thread switches voluntarily when it blocks (the event loop's poll with
    nothing to read, a sleep); each is followed by a wake-up, so the difference
    over a run counts the wake-ups. A thread that ended meanwhile drops out.
    """
    total = 0
    for task in tasks(pid, children):
        with contextlib.suppress(OSError):
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
                    break
    return total


def machine_busy_ns() -> int:
    """CPU time all processes of the machine have spent, in ns (``/proc/stat``, idle and iowait left out)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]  # guest time is already counted in user time
    return busy * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` to ``cpus``."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cpus)


Reading = tuple[int, int, int, int, int]


class CpuMeter:
    """CPU used by the host(s), the broker and this process between two readings."""

    def __init__(self, hosts: list[int], broker: int) -> None:
        self.hosts = hosts
        self.broker = broker
        #: Each host process and its workers (a supervisor first, then its workers).
        self.processes = [pid for host in hosts for pid in dict.fromkeys([host, *worker_pids(host)])]

    def read(self) -> Reading:
        """Host(s), broker, generator, the whole machine's busy CPU time, in ns; the host's wake-ups."""
        return (
            sum(cpu_ns(pid, children=True) for pid in self.hosts),
            cpu_ns(self.broker),
            cpu_ns(os.getpid()),
            machine_busy_ns(),
            sum(wakeups(pid, children=True) for pid in self.hosts),
        )

    def read_processes(self) -> list[int]:
        """CPU time of each of :attr:`processes` on its own (without its children), in ns."""
        return [cpu_ns(pid) for pid in self.processes]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def _result(
    mode: str,
    gen: Generator,
    events: int,
    seconds: float,
    cpu: tuple[Reading, Reading] | None = None,
    processes: tuple[list[int], list[int]] | None = None,
) -> Result:
    lat = sorted(gen.latencies_ns)
    if not lat:
        return Result(mode, events, seconds, 0.0, 0.0, 0.0, 0.0, events)
    per_event = [0.0, 0.0, 0.0]
    other = 0.0
    woke = 0.0
    if cpu is not None:
        before, after = cpu
        spent = [b - a for a, b in zip(before, after, strict=True)]
        per_event = [round(ns / len(lat) / 1e3, 1) for ns in spent[:3]]
        other = round(max(0, spent[3] - sum(spent[:3])) / 1e9 / seconds, 2)
        woke = round(max(0, spent[4]) / seconds, 1)
    split = []
    if processes is not None:
        split = [round((b - a) / len(lat) / 1e3, 1) for a, b in zip(*processes, strict=True)]

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] / 1e6

    return Result(
        mode=mode,
        events=len(lat),
        seconds=round(seconds, 3),
        events_per_second=round(len(lat) / seconds, 1),
        p50_ms=round(pct(0.50), 3),
        p99_ms=round(pct(0.99), 3),
        max_ms=round(lat[-1] / 1e6, 3),
        lost=events - len(lat),
        host_us=per_event[0],
        broker_us=per_event[1],
        generator_us=per_event[2],
        other_cpus=other,
        host_wakeups_per_s=woke,
        host_processes_us=split,
    )


def saturate(gen: Generator, sids: list[str], events: int, window: int, meter: CpuMeter | None = None) -> Result:
    """Offer pings round-robin over the sessions with at most ``window`` unanswered."""
    gen.reset()
    cpu0 = meter.read() if meter else None
    split0 = meter.read_processes() if meter else None
    begin = time.monotonic()
    for seq in range(events):
        stalled = time.monotonic() + 30
        while gen.in_flight() >= window:
            gen.pump(0.001)
            if time.monotonic() > stalled:
                raise RuntimeError(f"no pong for 30 s with {window} pings unanswered: have the sessions ended?")
        gen.ping(sids[seq % len(sids)], seq)
        gen.pump()
    gen.wait_drained(timeout=60)
    seconds = time.monotonic() - begin
    cpu = (cpu0, meter.read()) if meter and cpu0 else None
    split = (split0, meter.read_processes()) if meter and split0 else None
    return _result(f"saturation ({window} in flight)", gen, events, seconds, cpu, split)


def fixed_rate(gen: Generator, sids: list[str], rate: float, seconds: float, meter: CpuMeter | None = None) -> Result:
    """Pings paced at ``rate`` per second for ``seconds``.

    Open loop with a 1 ms tick: every tick sends the pings that have fallen
    due, in one write, as traffic from many clients reaches a broker.
    """
    gen.reset()
    events = int(rate * seconds)
    cpu0 = meter.read() if meter else None
    split0 = meter.read_processes() if meter else None
    begin = time.monotonic()
    seq = 0
    while seq < events:
        due = min(events, int((time.monotonic() - begin) * rate) + 1)
        while seq < due:
            gen.ping(sids[seq % len(sids)], seq)
            seq += 1
        gen.pump(0.001)
    gen.wait_drained(timeout=60)
    # Events over the time to the last pong: the rate the system carried.
    elapsed = time.monotonic() - begin
    cpu = (cpu0, meter.read()) if meter and cpu0 else None
    split = (split0, meter.read_processes()) if meter and split0 else None
    return _result(f"fixed {rate:.0f}/s", gen, events, elapsed, cpu, split)


@dataclass
class Setup:
    """A broker, hosts and a generator with sessions started."""

    broker: Mosquitto
    hosts: list[HostProcess]
    generator: Generator
    sessions: list[str]
    meter: CpuMeter
    layout: str


def worker_pids(host: int) -> list[int]:
    """The worker processes of a ``--workers N`` host (N > 1), or the host itself."""
    children = Path(f"/proc/{host}/task/{host}/children").read_text().split()
    return [int(pid) for pid in children] or [host]


@contextlib.contextmanager
def running(
    directory: Path,
    hosts: int,
    sessions: int,
    workers: int = 1,
    pin_cpus: bool = True,
    *,
    document: str = "pingpong",
    pin_workers: bool = False,
    read_pause: float | None = None,
) -> Iterator[Setup]:
    """Start everything, and stop it all on the way out."""
    broker = Mosquitto(directory / "broker")
    broker.start()
    started: list[HostProcess] = []
    generator = None
    try:
        for i in range(hosts):
            host = HostProcess(
                broker,
                directory,
                client_id=f"bench-host-{i}",
                extra=[
                    *("--topic-prefix", PREFIX, "--session-expiry", "60", "--workers", str(workers)),
                    *(() if read_pause is None else ("--read-pause", str(read_pause))),
                ],
            )
            deadline = time.monotonic() + 30
            while host.log.read_text().count("ready on") < workers and time.monotonic() < deadline:
                time.sleep(0.05)
            started.append(host)
        cpus = sorted(os.sched_getaffinity(0))
        assert broker.process is not None
        if pin_workers:
            pids = [pid for host in started for pid in worker_pids(host.process.pid)]
            for i, pid in enumerate(pids):
                pin(pid, {cpus[i % len(cpus)]})
            layout = (
                f"{hosts} host(s) x {workers} worker(s), worker i pinned to CPU i of {len(cpus)}; "
                "broker and generator unpinned"
            )
        elif pin_cpus and len(cpus) >= 2 and hosts == 1 and workers == 1:
            pin(started[0].process.pid, {cpus[0]})
            pin(broker.process.pid, {cpus[1]})
            pin(os.getpid(), {cpus[1]})
            layout = f"host pinned to CPU {cpus[0]}; broker and generator pinned to CPU {cpus[1]}"
        else:
            layout = f"{hosts} host(s) x {workers} worker(s), broker and generator unpinned on {len(cpus)} CPUs"
        generator = Generator(broker.port)
        sids = generator.start_sessions(sessions, document)
        if not generator.answers(sids[0], 5):
            raise RuntimeError(
                f"a {document} session did not answer a ping with a pong echoing its data "
                f"on {PREFIX}/sessions/<sid>/pong: the benchmark cannot drive that document"
            )
        meter = CpuMeter([h.process.pid for h in started], broker.process.pid)
        yield Setup(broker, started, generator, sids, meter, layout)
    finally:
        if generator is not None:
            generator.close()
        for host in started:
            host.stop()
        broker.stop()
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def measure(
    hosts: int,
    sessions: int,
    events: int,
    rates: list[float],
    rate_seconds: float,
    *,
    workers: int = 1,
    window: int = 200,
    pin_cpus: bool = True,
    document: str = "pingpong",
    pin_workers: bool = False,
    read_pause: float | None = None,
) -> tuple[str, list[Result]]:
    """Saturation, then each fixed rate, on one freshly started set-up; returns (layout, results)."""
    with tempfile.TemporaryDirectory() as tmp:
        with running(
            Path(tmp),
            hosts,
            sessions,
            workers,
            pin_cpus,
            document=document,
            pin_workers=pin_workers,
            read_pause=read_pause,
        ) as setup:
            # Warm up: QuickJS contexts, buffers, the broker's routing.
            saturate(setup.generator, setup.sessions, 2000, window=window)
            results = [saturate(setup.generator, setup.sessions, events, window, setup.meter)]
            for rate in rates:
                results.append(fixed_rate(setup.generator, setup.sessions, rate, rate_seconds, setup.meter))
            return setup.layout, results


def test_mqtt_load(benchmark: Any) -> None:
    layout, results = benchmark.pedantic(
        measure,
        kwargs={"hosts": 1, "sessions": 1000, "events": 50000, "rates": [1000, 3000], "rate_seconds": 5},
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info["layout"] = layout
    for result in results:
        benchmark.extra_info[result.mode] = asdict(result)


def _positive_ints(text: str) -> list[int]:
    """``--workers``: one count, or several separated by commas (``1,2``)."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or counts separated by commas, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"worker counts must be at least 1, got {text!r}")
    return values


def _pauses(text: str) -> list[float]:
    """``--read-pause``: milliseconds, one value or several separated by commas (``2,4``)."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected milliseconds, or several separated by commas, got {text!r}"
        ) from None
    if any(not 0 <= v <= 1000 for v in values):
        raise argparse.ArgumentTypeError(f"a read pause is 0 to 1000 ms, got {text!r}")
    return values


def _positive_rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected events per second, got {text!r}") from None
    if not 0 < rate < float("inf"):
        raise argparse.ArgumentTypeError(f"a rate must be above 0 events/s, got {text!r}")
    return rate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``rates`` and ``plan`` ((workers, read pause) in run order) are filled in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1, help="host processes (default 1)")
    parser.add_argument(
        "--workers",
        type=_positive_ints,
        default=[1],
        help="--workers of each host process (default 1); several, e.g. 1,2, are measured in turn",
    )
    parser.add_argument(
        "--read-pause",
        type=_pauses,
        default=[None],
        metavar="MS",
        help="the host's --read-pause (default: the host's own); several, e.g. 2,4, are measured in turn",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="times to measure the --workers and --read-pause lists (default 1)"
    )
    parser.add_argument(
        "--document",
        default="pingpong",
        help="document of examples/documents the sessions run (default pingpong; router is heavier)",
    )
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--events", type=int, default=50000, help="pings in the saturation run")
    parser.add_argument("--window", type=int, default=200, help="pings in flight in the saturation run")
    parser.add_argument(
        "--rate",
        type=_positive_rate,
        action="append",
        help="events/s of a fixed-rate run; repeat for several (default 1000 and 3000)",
    )
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument("--saturation-only", action="store_true", help="no fixed-rate runs")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the processes to CPUs")
    parser.add_argument(
        "--pin-workers", action="store_true", help="pin worker i to CPU i; the broker and the generator float"
    )
    args = parser.parse_args(argv)
    if args.saturation_only and args.rate:
        parser.error("--saturation-only and --rate exclude each other")
    known = sorted(p.stem for p in DOCUMENTS.glob("*.scxml"))
    if args.document not in known:
        parser.error(f"no document {args.document!r} in {DOCUMENTS} (there are: {', '.join(known)})")
    for name in ("hosts", "rounds", "sessions", "events", "window"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if not 0 < args.rate_seconds < float("inf"):
        parser.error("--rate-seconds must be above 0")
    args.rates = [] if args.saturation_only else (args.rate or [1000.0, 3000.0])
    args.plan = [(w, pause) for w in args.workers for pause in args.read_pause] * args.rounds
    return args


def _measure_one(args: argparse.Namespace, workers: int, read_pause: float | None) -> tuple[str, list[Result]]:
    return measure(
        args.hosts,
        args.sessions,
        args.events,
        args.rates,
        args.rate_seconds,
        workers=workers,
        window=args.window,
        pin_cpus=not args.no_pin,
        document=args.document,
        pin_workers=args.pin_workers,
        read_pause=read_pause,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for workers, read_pause in args.plan:
        try:
            layout, results = _measure_one(args, workers, read_pause)
        except RuntimeError as exc:
            print(f"bench_mqtt_load: error: {exc}", file=sys.stderr)
            return 1
        print(
            f"{os.cpu_count()} CPUs, {args.sessions} {args.document} sessions, QoS 1; {layout}; "
            + ("" if read_pause is None else f"--read-pause {read_pause:g}; ")
            + f"load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"{'mode':<26}{'events':>8}{'events/s':>10}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>9}{'lost':>5}"
            f"{'host us':>9}{'broker us':>10}{'gen us':>8}{'other CPUs':>11}{'host wakeups/s':>15}"
        )
        for r in results:
            print(
                f"{r.mode:<26}{r.events:>8}{r.events_per_second:>10.0f}{r.p50_ms:>8.2f}"
                f"{r.p99_ms:>8.2f}{r.max_ms:>9.2f}{r.lost:>5}{r.host_us:>9.1f}{r.broker_us:>10.1f}"
                f"{r.generator_us:>8.1f}{r.other_cpus:>11.2f}{r.host_wakeups_per_s:>15.0f}"
            )
        if workers > 1:
            print("host us per event, supervisor then each worker:")
            for r in results:
                print(f"  {r.mode:<24}" + " ".join(f"{us:>8.1f}" for us in r.host_processes_us))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
