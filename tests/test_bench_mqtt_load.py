"""The load benchmark's command line and process readers (no broker, no timings)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks.bench_mqtt_load import cpu_ns, main, parse_args, tasks, wakeups, worker_pids
from tests.mqtt_support import require_program


def test_defaults_keep_todays_run() -> None:
    args = parse_args([])
    assert args.document == "pingpong"
    assert args.plan == [(1, None)]
    assert args.rates == [1000.0, 3000.0]
    assert not args.pin_workers and not args.no_pin


def test_rate_3000_runs_that_rate_only() -> None:
    assert parse_args(["--rate", "3000"]).rates == [3000.0]


def test_workers_list_and_rounds_interleave() -> None:
    args = parse_args(["--document", "router", "--workers", "1,2", "--rounds", "3", "--saturation-only"])
    assert args.document == "router"
    assert args.plan == [(1, None), (2, None)] * 3
    assert args.rates == []
    assert parse_args(["--workers", "2"]).plan == [(2, None)]


def test_read_pauses_are_measured_in_turn_within_each_round() -> None:
    args = parse_args(["--read-pause", "2,4", "--rounds", "2"])
    assert args.plan == [(1, 2.0), (1, 4.0), (1, 2.0), (1, 4.0)]
    assert parse_args(["--read-pause", "0"]).plan == [(1, 0.0)]


@pytest.mark.parametrize(
    "argv",
    [
        ["--workers", "0"],
        ["--workers", "1,x"],
        ["--workers", ""],
        ["--workers", "2,-1"],
        ["--rounds", "0"],
        ["--rate", "0"],
        ["--rate", "-5"],
        ["--rate", "nan"],
        ["--rate", "inf"],
        ["--rate", "fast"],
        ["--saturation-only", "--rate", "3000"],
        ["--document", "absent"],
        ["--document", "../README"],
        ["--events", "0"],
        ["--rate-seconds", "0"],
        ["--rate-seconds", "nan"],
        ["--document", "../retry-with-delay"],
        ["--read-pause", "-1"],
        ["--read-pause", "2,x"],
        ["--read-pause", "nan"],
        ["--read-pause", "5000"],
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_an_unknown_document_names_the_ones_there_are(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--document", "absent"])
    err = capsys.readouterr().err
    assert "'absent'" in err and "pingpong" in err and "router" in err


def test_wakeups_count_this_process_sleeping() -> None:
    before = wakeups(os.getpid())
    for _ in range(20):
        time.sleep(0.001)
    # Each sleep blocks the thread once: at least 20 voluntary switches.
    assert wakeups(os.getpid()) - before >= 20


def test_wakeups_and_cpu_include_every_thread() -> None:
    stop = threading.Event()
    woke = threading.Event()

    def sleeper() -> None:
        while not stop.is_set():
            time.sleep(0.001)
            woke.set()

    thread = threading.Thread(target=sleeper)
    thread.start()
    try:
        assert woke.wait(5)
        ids = {int(task.name) for task in tasks(os.getpid())}
        assert {os.getpid(), thread.native_id} <= ids
        before = wakeups(os.getpid())
        main_before = wakeups_of_main_thread()
        time.sleep(0.1)  # one switch for this thread, many for the sleeper
        assert wakeups(os.getpid()) - before > wakeups_of_main_thread() - main_before + 10
    finally:
        stop.set()
        thread.join()


def wakeups_of_main_thread() -> int:
    status = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("voluntary_ctxt_switches:")))


def test_children_are_counted_and_listed_as_workers() -> None:
    # A parent that sleeps while its child spins and sleeps: the parent's own
    # counters miss the child, the tree's include it.
    code = (
        "import subprocess, sys;"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import time\\nfor _ in range(400):\\n    sum(range(20000)); time.sleep(0.001)']);"
        "print(child.pid, flush=True); child.wait()"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while worker_pids(parent.pid) != [child]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        before_own, before_tree = wakeups(parent.pid), wakeups(parent.pid, children=True)
        cpu_own, cpu_tree = cpu_ns(parent.pid), cpu_ns(parent.pid, children=True)
        time.sleep(0.2)
        assert wakeups(parent.pid, children=True) - before_tree > wakeups(parent.pid) - before_own + 10
        assert cpu_ns(parent.pid, children=True) - cpu_tree > cpu_ns(parent.pid) - cpu_own
    finally:
        parent.kill()
        parent.wait()
        assert parent.stdout is not None
        parent.stdout.close()


def test_a_process_without_children_is_its_own_worker() -> None:
    alone = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert worker_pids(alone.pid) == [alone.pid]
    finally:
        alone.kill()
        alone.wait()


def test_a_process_that_is_gone_reads_as_nothing() -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = int(done.stdout)
    assert tasks(gone) == [] and wakeups(gone) == 0 and cpu_ns(gone) == 0


# ---------------------------------------------------------------- whole runs against a real broker


@pytest.mark.slow
def test_a_short_run_at_3000_per_second_prints_todays_columns_and_the_wakeups(
    capsys: pytest.CaptureFixture[str],
) -> None:
    require_program("mosquitto", "/usr/sbin")
    status = main(["--rate", "3000", "--rate-seconds", "0.5", "--sessions", "20", "--events", "300"])
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    assert "20 pingpong sessions" in out[0] and "QoS 1" in out[0]
    header = out[1].split()
    assert header[:6] == ["mode", "events", "events/s", "p50", "ms", "p99"]
    assert out[1].rstrip().endswith("other CPUs host wakeups/s")
    # The mode fills the first 26 characters; the figures follow, one per column.
    modes = [line[:26].strip() for line in out[2:]]
    assert modes == ["saturation (200 in flight)", "fixed 3000/s"]
    saturation, fixed = ([float(v) for v in line[26:].split()] for line in out[2:])
    assert len(saturation) == len(fixed) == 11
    assert saturation[0] == 300 and fixed[0] == 1500  # events answered
    assert saturation[5] == 0 and fixed[5] == 0  # none lost
    assert saturation[6] > 0 and fixed[6] > 0  # host CPU per event
    assert float(fixed[-1]) > 0  # the host slept and woke while pings were paced


@pytest.mark.slow
def test_a_document_that_does_not_answer_pings_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    require_program("mosquitto", "/usr/sbin")
    status = main(["--document", "greeter", "--sessions", "2", "--events", "10", "--saturation-only"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("bench_mqtt_load: error: a greeter session did not answer a ping") and "Traceback" not in err
