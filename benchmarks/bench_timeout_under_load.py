"""How long a 0.5 s ``process-event-timeout`` takes to stop ``while(true){}`` on a busy machine.

Starts ``--burners`` CPU-burning processes (default 3, more than the two CPUs of
the development machine) and then, ``--runs`` times, sends one event to a
session whose transition runs ``<script>while (true) {}</script>`` under
``process-event-timeout`` = ``--timeout`` seconds. Each run measures the wall
time (monotonic) from ``send`` to its return and checks that the session was
stopped by ``process-event-timeout``. Prints min/median/max and how many runs
met the target (default 0.9 s, the guard issue's "Done when").

Each run happens in a fresh child process, so one run that never stops (a deadline
measured in CPU time under contention, a script running unguarded) is reported
after ``--give-up`` seconds instead of hanging the benchmark.

Run::

    python benchmarks/bench_timeout_under_load.py [--runs 10] [--burners 3] [--timeout 0.5]

It reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time

#: The child: one session, one runaway script, one measurement as JSON.
PROBE = """
import json, sys, time
import orsguard
timeout = float(sys.argv[1])
doc = orsguard.load('<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" datamodel="ecmascript" '
                    'initial="a"><state id="a"><transition event="go" target="b">'
                    '<script>while (true) {}</script></transition></state><state id="b"/></scxml>')
s = orsguard.Session(doc, limits=orsguard.Limits(process_event_timeout=timeout))
s.start()
t0 = time.monotonic()
s.send("go")
elapsed = time.monotonic() - t0
t = s.termination
print(json.dumps({"elapsed": elapsed, "option": t and t.option, "cpu": time.process_time()}))
"""


def _burn() -> None:
    while True:
        pass


def one_run(timeout: float, give_up: float) -> dict:
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, str(timeout)], capture_output=True, text=True, timeout=give_up
        )
    except subprocess.TimeoutExpired:
        return {"elapsed": None, "note": f"not stopped after {give_up:g} s (killed)"}
    if proc.returncode != 0:
        return {"elapsed": None, "note": f"exit status {proc.returncode}: {proc.stderr.strip()[-300:]}"}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_total"] = time.monotonic() - start
    if result["option"] != "process-event-timeout":
        result["note"] = f"ended by {result['option']!r}, not process-event-timeout"
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--burners", type=int, default=3, help="CPU-burning processes during the runs")
    parser.add_argument("--timeout", type=float, default=0.5, help="process-event-timeout in seconds")
    parser.add_argument("--target", type=float, default=0.9, help="wall seconds a stop should take at most")
    parser.add_argument("--give-up", type=float, default=30.0, help="kill a run after this many seconds")
    args = parser.parse_args(argv)

    import orsguard

    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.burners)]
    for p in burners:
        p.start()
    try:
        time.sleep(0.5)  # let the burners reach full speed
        results = [one_run(args.timeout, args.give_up) for _ in range(args.runs)]
    finally:
        for p in burners:
            p.terminate()
        for p in burners:
            p.join()

    print(
        f"orsguard {orsguard.__version__}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"{args.burners} CPU burners, process-event-timeout {args.timeout:g} s, {args.runs} runs"
    )
    for i, r in enumerate(results, 1):
        shown = f"{r['elapsed']:.3f} s" if r["elapsed"] is not None else "-"
        print(f"  run {i:2}: {shown}  {r.get('note', '')}")
    stops = [r["elapsed"] for r in results if r["elapsed"] is not None and "note" not in r]
    if stops:
        met = sum(1 for s in stops if s < args.target)
        print(
            f"stop time (wall): min {min(stops):.3f} s, median {statistics.median(stops):.3f} s, "
            f"max {max(stops):.3f} s; under {args.target:g} s: {met}/{len(results)}"
        )
    else:
        print("no run was stopped by process-event-timeout")
    return 0


if __name__ == "__main__":
    sys.exit(main())
