"""CPU time of one ``Session.send`` of the ``pingpong`` example, in-process, no broker.

    python benchmarks/bench_send.py                  # about 30 s
    python benchmarks/bench_send.py --quick          # smoke run
    python benchmarks/bench_send.py --json out.json  # also write the figures
    python benchmarks/bench_send.py --against DIR    # this tree against the orsguard in DIR

One ``send("ping", {"n": i})`` per call, answered by the document with a
``<send type="mqtt">`` carrying three ``<param>``. Cases, taken in turn within
every round so that a slow spell of the machine hits them all:

* ``mqtt``: the sessions use :class:`~orsguard.ioprocessors.mqtt.MqttEventIOProcessor`
  with its publish replaced by a no-op callback, as the host uses it (topic
  resolution and JSON encoding included);
* ``callback``: a processor registered for the same type that hands the event
  to a no-op callback (plain in-process delivery: the session's own cost);
* ``record``: no processor, ``Session(sends="record")`` (the test harness's outbox);
* ``toggle``: ``benchmarks/documents/toggle.scxml`` (no expressions), for scale.

Each case runs on 1 session and round robin over ``--sessions`` live sessions
(1,000 by default), on the host's clock (:class:`~orsguard.clock.AsyncioClock`).
Figures are CPU time (``time.process_time``) per send: the best round and the
median of the rounds. ``--against DIR`` runs the measurement in child
processes alternately with ``PYTHONPATH=DIR`` and with this tree, and prints
both. The script reports; it asserts nothing about speed.
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

HERE = Path(__file__).resolve().parent
PINGPONG = HERE.parent / "examples" / "documents" / "pingpong.scxml"
TOGGLE = HERE / "documents" / "toggle.scxml"
MQTT = "http://orsguard.dev/mqtt"
CASES = ("mqtt", "callback", "record", "toggle")


class CallbackProcessor:
    """Delivers ``<send type="mqtt">`` events to a Python callback, in-process."""

    type_uri = MQTT
    aliases = ("mqtt",)

    def __init__(self) -> None:
        self.count = 0

    def location(self, session: Any) -> str:
        return "inproc:" + session.session_id

    def send(self, session: Any, event: Any, target: str) -> None:
        self.count += 1


def _sessions(case: str, n: int, clock: Any) -> tuple[list[Any], Any]:
    import orsguard
    from orsguard.ioprocessors.mqtt import MqttEventIOProcessor

    published = [0]

    def publish(topic: str, payload: bytes, properties: Any) -> None:
        published[0] += 1

    if case == "toggle":
        doc = orsguard.load_file(str(TOGGLE))
        # Every toggle enters a state: no entry limit, or the session ends mid-run.
        kwargs: dict[str, Any] = {"limits": orsguard.Limits(max_state_entry_count=0)}
    else:
        doc = orsguard.load_file(str(PINGPONG))
        if case == "mqtt":
            kwargs = {"ioprocessors": [MqttEventIOProcessor(publish, topic_prefix="orsguard")]}
        elif case == "callback":
            kwargs = {"ioprocessors": [CallbackProcessor()]}
        else:
            kwargs = {"sends": "record"}
    sessions = [orsguard.Session(doc, clock=clock, **kwargs).start() for _ in range(n)]
    return sessions, published


def _driver(case: str, sessions: list[Any]) -> Any:
    name = "t" if case == "toggle" else "ping"
    sends = [s.send for s in sessions]

    def run(passes: int) -> int:
        i = 0
        for _ in range(passes):
            for send in sends:
                # A fresh dict per event, as the host's JSON decoder gives.
                if not send(name, {"n": i}):
                    raise RuntimeError(f"{case}: a session refused the event")
                i += 1
        return i

    return run


def measure(rounds: int, events: int, many: int) -> dict[str, dict[str, float]]:
    """Per case and population: ``{"best": us, "median": us}`` of CPU time per send."""
    loop = asyncio.new_event_loop()
    from orsguard.clock import AsyncioClock

    clock = AsyncioClock(loop)
    runs: dict[str, tuple[Any, int, list[Any]]] = {}
    for case in CASES:
        for n in (1, many):
            sessions, _ = _sessions(case, n, clock)
            drive = _driver(case, sessions)
            drive(max(1, 200 // n))  # warm up: compiled expressions, caches
            runs[f"{case}/{n}"] = (drive, max(1, events // n), sessions)
    samples: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(rounds):
        for key, (drive, passes, sessions) in runs.items():
            gc.collect()
            t = time.process_time()
            sent = drive(passes)
            samples[key].append((time.process_time() - t) / sent * 1e6)
            if key.startswith("record/"):
                for s in sessions:
                    s.outbox.clear()
    for _, _, sessions in runs.values():
        for s in sessions:
            if not s.running or s.final is not None:
                raise RuntimeError("a session ended during the benchmark")
    loop.close()
    return {key: {"best": min(v), "median": statistics.median(v)} for key, v in samples.items()}


def _child(pythonpath: str | None, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    else:
        env.pop("PYTHONPATH", None)
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--rounds",
        str(args.rounds),
        "--events",
        str(args.events),
        "--sessions",
        str(args.sessions),
    ]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _table(columns: dict[str, dict[str, dict[str, float]]], many: int) -> str:
    lines = [
        "| case | sessions | " + " | ".join(f"{c} best | {c} median" for c in columns) + " |",
        "| --- | ---: |" + " ---: | ---: |" * len(columns),
    ]
    for case in CASES:
        for n in (1, many):
            key = f"{case}/{n}"
            cells = []
            for figures in columns.values():
                cells += [f"{figures[key]['best']:.2f}", f"{figures[key]['median']:.2f}"]
            lines.append(f"| {case} | {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rounds, few events")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--events", type=int, default=20000, help="sends per case per round")
    parser.add_argument("--sessions", type=int, default=1000, help="live sessions for the round robin")
    parser.add_argument("--against", metavar="DIR", help="another orsguard tree (its orsguard/ built in place)")
    parser.add_argument("--repeat", type=int, default=3, help="child processes per tree with --against")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.events, args.repeat = 3, 2000, 1
    if args.child:
        print(json.dumps(measure(args.rounds, args.events, args.sessions)))
        return 0
    if args.against:
        here = str(HERE.parent)
        acc: dict[str, list[dict[str, dict[str, float]]]] = {"against": [], "this": []}
        for _ in range(args.repeat):  # alternately
            acc["against"].append(_child(args.against, args))
            acc["this"].append(_child(here, args))
        columns = {
            label: {
                key: {
                    "best": min(r[key]["best"] for r in runs),
                    "median": statistics.median(r[key]["median"] for r in runs),
                }
                for key in runs[0]
            }
            for label, runs in acc.items()
        }
    else:
        columns = {"this": measure(args.rounds, args.events, args.sessions)}
    print("CPU us per Session.send (best round; median of rounds)")
    print(_table(columns, args.sessions))
    if args.json:
        Path(args.json).write_text(json.dumps(columns, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
