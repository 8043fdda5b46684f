"""The ``orsguard`` command, run as a real subprocess from the repository root."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import cli as orsguard

RUNAWAY = "examples/runaway.scxml"
RETRY = "examples/retry-with-delay.scxml"

#: A macrostep that never ends: only process-event-timeout can stop it.
SPIN = """<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0">
  <state id="s"><transition event="go"><script>while (true) {}</script></transition></state>
</scxml>
"""


def outcome(text: str) -> str:
    """The line of ``orsguard run`` output that says how the session ended."""
    lines = [
        line for line in text.splitlines() if line.startswith(("terminated: ", "final: ", "running in: ", "ended: "))
    ]
    assert len(lines) == 1, text
    return lines[0]


# ---------------------------------------------------------------- orsguard run


def test_runaway_is_stopped_by_max_microstep_count_with_the_loop_and_peaks() -> None:
    result = orsguard("run", RUNAWAY, "--event", "call.arrived")
    assert result.returncode == 3, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("terminated: max-microstep-count=1000 exceeded")
    assert "route -> retry" in lines[0].split("loop:", 1)[1]
    assert "  transition " not in result.stdout  # only with --trace
    assert lines[1] == "peaks:"
    assert re.fullmatch(r"  max-microstep-count +1001 +limit 1000", lines[2])
    assert re.fullmatch(r"  max-state-entry-count +500 \(route\) +limit 10000", lines[3])
    assert re.fullmatch(r"  max-pending-events +\d+ +limit 1000", lines[4])
    assert re.fullmatch(r"  process-event-timeout +[\d.e+-]+ s +limit 5", lines[5])
    assert re.fullmatch(r"  max-session-age +[\d.e+-]+ s +limit 86400", lines[6])
    assert len(lines) == 7


def test_trace_prints_events_and_transitions() -> None:
    result = orsguard("run", RUNAWAY, "--event", "call.arrived", "--trace", "--limit", "max-microstep-count=3")
    assert result.returncode == 3
    lines = result.stdout.splitlines()
    assert lines[:7] == [
        f"start {RUNAWAY}",
        "  transition __scxml__ -> idle",
        "event call.arrived",
        "  transition idle -> route",
        "  transition route -> retry",
        "  transition retry -> route",
        "terminated: max-microstep-count=3 exceeded (observed 4) while taking route -> retry; "
        "trail: idle -> route -> retry -> route",
    ]


def test_json_is_one_object_with_final_termination_peaks_and_stats() -> None:
    result = orsguard("run", RUNAWAY, "--event", "call.arrived", "--json", "--limit", "max-microstep-count=50")
    assert result.returncode == 3, result.stderr
    data = json.loads(result.stdout)
    assert data["final"] is None
    assert data["termination"]["option"] == "max-microstep-count"
    assert data["termination"]["limit"] == 50 and data["termination"]["observed"] == 51
    assert sorted(data["termination"]["trail"][-2:]) == ["retry -> route", "route -> retry"]
    assert data["peaks"]["max-microstep-count"] == 51
    assert data["peaks"]["max-state-entry-count"] == 25 and data["peaks"]["state"] == "route"
    assert set(data["peaks"]) == {
        "max-microstep-count",
        "max-state-entry-count",
        "max-pending-events",
        "process-event-timeout",
        "max-session-age",
        "state",
    }
    assert data["stats"]["limit_violations"]["max-microstep-count"] == 1
    assert data["stats"]["microsteps_per_macrostep"]["buckets"][-1] == "+Inf"  # valid JSON, no Infinity


def test_json_of_a_final_session_sends_logs_to_stderr() -> None:
    result = orsguard("run", RETRY, "--event", "call.arrived", "--virtual-time", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["final"] == "voicemail" and data["termination"] is None
    assert data["peaks"]["max-state-entry-count"] == 3 and data["peaks"]["state"] == "route"
    assert data["peaks"]["max-session-age"] == 10.0  # two 5 s retries on the virtual clock
    assert "log attempt: 3" in result.stderr


#: "early" before the 5 s timer wins; "late" order matters: a then b.
TIMED = """<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" initial="s0">
  <state id="s0">
    <onentry><send event="timeout" delay="5s"/></onentry>
    <transition event="timeout" target="fail"/>
    <transition event="b" target="fail"/>
    <transition event="a" target="s1"/>
  </state>
  <state id="s1"><transition event="b" target="pass"/><transition event="timeout" target="fail"/></state>
  <final id="pass"/><final id="fail"/>
</scxml>
"""


@pytest.mark.parametrize(
    ("events", "final"),
    [
        (["a@1", "b@4.5"], "pass"),
        (["b@2", "a@1"], "pass"),  # delivered by time, not by argument order
        (["a@1", "b@5.5"], "fail"),  # the timer fires at its virtual time first
        (["a", "b@0"], "pass"),
        (["b@3", "a"], "pass"),  # an event without a time goes at the start
    ],
)
def test_timed_events_are_delivered_at_their_virtual_time(tmp_path: Path, events: list[str], final: str) -> None:
    doc = tmp_path / "timed.scxml"
    doc.write_text(TIMED)
    args = [a for e in events for a in ("--event", e)]
    result = orsguard("run", doc, "--virtual-time", *args)
    assert result.returncode == 0, result.stderr
    assert outcome(result.stdout) == f"final: {final}"


def test_timed_events_on_the_real_clock(tmp_path: Path) -> None:
    doc = tmp_path / "timed.scxml"
    doc.write_text(TIMED.replace('delay="5s"', 'delay="0.6s"'))
    result = orsguard("run", doc, "--event", "a@0.1", "--event", "b@0.3", "--json")
    data = json.loads(result.stdout)
    assert data["final"] == "pass"
    assert 0.3 <= data["peaks"]["max-session-age"] < 0.6


@pytest.mark.parametrize("event", ["a@soon", "a@-1", "a@inf", "@1", "a@nan=1"])
def test_bad_event_time_exits_2(event: str) -> None:
    result = orsguard("run", RUNAWAY, "--event", event)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_version_and_subcommands() -> None:
    result = orsguard("--version")
    assert result.returncode == 0 and re.fullmatch(r"orsguard \d+\.\d+\.\d+\n", result.stdout)
    usage = orsguard("--help").stdout
    for command in ("run", "lint", "diagram", "replay", "serve", "options"):
        assert command in usage


def test_retry_with_delay_reaches_voicemail_after_three_attempts() -> None:
    result = orsguard("run", RETRY, "--event", "call.arrived", "--virtual-time")
    assert result.returncode == 0, result.stderr
    attempts = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("log attempt")]
    assert attempts == ["log attempt: 1", "log attempt: 2", "log attempt: 3"]
    assert outcome(result.stdout) == "final: voicemail"


def test_a_session_still_running_exits_zero_and_says_where() -> None:
    result = orsguard("run", RUNAWAY, "--virtual-time")
    assert result.returncode == 0, result.stderr
    assert outcome(result.stdout) == "running in: idle"


def test_event_data_is_json() -> None:
    result = orsguard(
        "run", RUNAWAY, "--event", 'call.arrived={"ani": "5551234"}', "--limit", "max-microstep-count=3", "--trace"
    )
    assert result.returncode == 3
    assert 'event call.arrived {"ani": "5551234"}' in result.stdout


def test_limit_option_changes_which_limit_fires() -> None:
    result = orsguard("run", RUNAWAY, "--event", "call.arrived", "--limit", "max-state-entry-count=5")
    assert result.returncode == 3, result.stderr
    line = outcome(result.stdout)
    assert line.startswith("terminated: max-state-entry-count=5 exceeded (observed 6)")
    assert "entering route" in line


def test_limit_zero_switches_a_limit_off() -> None:
    result = orsguard(
        "run",
        RUNAWAY,
        "--event",
        "call.arrived",
        "--limit",
        "max-microstep-count=0",
        "--limit",
        "max-state-entry-count=50",
    )
    assert result.returncode == 3
    assert "max-state-entry-count=50 exceeded" in outcome(result.stdout)


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("bogus=5", "max-microstep-count"),
        ("max-microstep-count", "OPTION=VALUE"),
        ("max-microstep-count=abc", "not a number"),
        # Limits' own messages: the same check as for Limits(...) in Python.
        ("max-microstep-count=-1", "max-microstep-count must be >= 0 (0 = unlimited), got -1\n"),
        ("process-event-timeout=-0.5", "process-event-timeout must be >= 0 (0 = unlimited), got -0.5\n"),
        ("max-microstep-count=2.5", "max-microstep-count must be a whole number, got 2.5\n"),
        ("max-microstep-count=inf", "finite"),
        ("max-session-age=-inf", "finite"),
        ("process-event-timeout=nan", "finite"),
        ("max-microstep-count=1e30", "too large"),
        ("max-pending-events=18446744073709551616", "too large"),
        ("max-state-entry-count=9223372036854775808", "too large"),
        ("max-microstep-count=2147483648", "at most 2147483647"),
    ],
)
def test_bad_limit_exits_2_with_a_message(limit: str, message: str) -> None:
    result = orsguard("run", RUNAWAY, "--event", "call.arrived", "--limit", limit)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "terminated" not in result.stdout


def test_event_data_that_is_not_json_exits_2() -> None:
    result = orsguard("run", RUNAWAY, "--event", "call.arrived=notjson")
    assert result.returncode == 2
    assert "not JSON" in result.stderr
    assert result.stdout == ""


def test_missing_document_argument_exits_2() -> None:
    result = orsguard("run")
    assert result.returncode == 2


def test_malformed_document_exits_1_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.scxml"
    path.write_text('<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0">\n<state id="a">\n</stat>\n')
    result = orsguard("run", path)
    assert result.returncode == 1
    assert f"{path}:3:" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_document_exits_1_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad-target.scxml"
    path.write_text(
        '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0">\n'
        '<state id="a">\n  <transition event="e" target="nowhere"/>\n</state>\n</scxml>\n'
    )
    result = orsguard("run", path)
    assert result.returncode == 1
    assert f"{path}:3:" in result.stderr
    assert "nowhere" in result.stderr


def test_missing_document_file_exits_1(tmp_path: Path) -> None:
    result = orsguard("run", tmp_path / "absent.scxml")
    assert result.returncode == 1
    assert "absent.scxml" in result.stderr


# ---------------------------------------------------------------- --options


def options_file(tmp_path: Path, scxml_section: str) -> Path:
    path = tmp_path / "ors.cfg"
    path.write_text("[orchestration]\nsend-retries=3\n\n[scxml]\n" + scxml_section)
    return path


def test_options_file_sets_the_limit(tmp_path: Path) -> None:
    cfg = options_file(tmp_path, "max-microstep-count=7\n")
    result = orsguard("run", RUNAWAY, "--event", "call.arrived", "--options", cfg)
    assert result.returncode == 3, result.stderr
    assert outcome(result.stdout).startswith("terminated: max-microstep-count=7 exceeded (observed 8)")


def test_limit_flag_overrides_the_options_file(tmp_path: Path) -> None:
    cfg = options_file(tmp_path, "max-microstep-count=7\n")
    result = orsguard("run", RUNAWAY, "--event", "call.arrived", "--options", cfg, "--limit", "max-microstep-count=11")
    assert result.returncode == 3, result.stderr
    assert outcome(result.stdout).startswith("terminated: max-microstep-count=11 exceeded (observed 12)")


@pytest.mark.parametrize(
    ("flags", "seconds"),
    [
        # The file's 300 is milliseconds ...
        ((), "0.3"),
        # ... and --limit, in seconds, overrides it.
        (("--limit", "process-event-timeout=0.2"), "0.2"),
    ],
)
def test_process_event_timeout_from_the_file_in_ms_and_from_the_flag_in_seconds(
    tmp_path: Path, flags: tuple[str, ...], seconds: str
) -> None:
    spin = tmp_path / "spin.scxml"
    spin.write_text(SPIN)
    cfg = options_file(tmp_path, "process-event-timeout=300\n")
    result = orsguard("run", spin, "--event", "go", "--options", cfg, *flags)
    assert result.returncode == 3, result.stderr
    assert outcome(result.stdout).startswith(f"terminated: process-event-timeout={seconds} exceeded")


def test_environment_overrides_the_options_file(tmp_path: Path) -> None:
    cfg = options_file(tmp_path, "max-microstep-count=7\n")
    result = orsguard(
        "run", RUNAWAY, "--event", "call.arrived", "--options", cfg, env={"ORSGUARD_SCXML_MAX_MICROSTEP_COUNT": "9"}
    )
    assert result.returncode == 3, result.stderr
    assert "max-microstep-count=9 exceeded" in outcome(result.stdout)


def test_environment_applies_without_an_options_file() -> None:
    result = orsguard("run", RUNAWAY, "--event", "call.arrived", env={"ORSGUARD_SCXML_MAX_MICROSTEP_COUNT": "9"})
    assert "max-microstep-count=9 exceeded" in outcome(result.stdout)


@pytest.mark.parametrize(
    "command", [("run", RUNAWAY, "--event", "call.arrived"), ("replay", "traffic.jsonl", "--documents", "examples")]
)
def test_bad_value_in_the_options_file_exits_1_naming_file_and_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    cfg = options_file(tmp_path, "max-pending-events=10\nmax-microstep-count=-5\n")
    result = orsguard(*command, "--options", cfg)
    assert result.returncode == 1
    assert (
        result.stderr == f"orsguard: {cfg}:6: scxml/max-microstep-count: must not be negative, got '-5'; "
        "0 means no limit\n"
    )
    assert result.stdout == ""


def test_missing_options_file_exits_1(tmp_path: Path) -> None:
    result = orsguard("run", RUNAWAY, "--options", tmp_path / "absent.cfg")
    assert result.returncode == 1
    assert "absent.cfg" in result.stderr


# ---------------------------------------------------------------- orsguard options


def test_options_check_of_a_valid_file_exits_0() -> None:
    result = orsguard("options", "check", "tests/data/options/ors-8.1.3.cfg")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 errors" in result.stderr


def test_options_check_reports_errors_by_line_and_exits_1(tmp_path: Path) -> None:
    cfg = options_file(tmp_path, "max-pending-events=-5\n")
    result = orsguard("options", "check", cfg)
    assert result.returncode == 1
    assert f"{cfg}:5: scxml/max-pending-events: error:" in result.stdout


def test_options_check_warns_about_removed_options_without_failing() -> None:
    result = orsguard("options", "check", "examples/ors-8.1.2.cfg")
    assert result.returncode == 0
    assert "cluster/name: warning: removed in ORS 8.1.3" in result.stdout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("command", ["run", "lint", "diagram"])
def test_a_fifo_or_device_document_is_refused_instead_of_hanging(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "doc.scxml"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        result = orsguard(command, path)
        assert result.returncode == 1
        assert f"{path}" in result.stdout + result.stderr and "not a regular file" in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_event_data_nested_too_deep_exits_2() -> None:
    result = orsguard("run", RUNAWAY, "--event", "call.arrived=" + "[" * 20000 + "]" * 20000)
    assert result.returncode == 2
    assert "not JSON" in result.stderr and "Traceback" not in result.stderr
