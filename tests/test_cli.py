"""The ``orsguard`` command, run as a real subprocess from the repository root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNAWAY = "examples/runaway.scxml"
RETRY = "examples/retry-with-delay.scxml"

#: A macrostep that never ends: only process-event-timeout can stop it.
SPIN = """<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0">
  <state id="s"><transition event="go"><script>while (true) {}</script></transition></state>
</scxml>
"""


def orsguard(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m orsguard.cli ARGS``; limits come only from the arguments unless ``env`` adds some."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ORSGUARD_")}
    clean.update(env or {})
    return subprocess.run([sys.executable, "-m", "orsguard.cli", *map(str, args)], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=120)


def last_line(text: str) -> str:
    return text.rstrip("\n").rsplit("\n", 1)[-1]


# ---------------------------------------------------------------- orsguard run


def test_runaway_is_stopped_by_max_microstep_count_with_the_loop() -> None:
    result = orsguard("run", RUNAWAY, "--event", "call.arrived")
    assert result.returncode == 3, result.stderr
    outcome = last_line(result.stdout)
    assert outcome.startswith("terminated: max-microstep-count=1000 exceeded")
    assert "loop:" in outcome
    assert "route -> retry" in outcome.split("loop:", 1)[1]
    assert "  transition route -> retry" in result.stdout


def test_retry_with_delay_reaches_voicemail_after_three_attempts() -> None:
    result = orsguard("run", RETRY, "--event", "call.arrived", "--virtual-time")
    assert result.returncode == 0, result.stderr
    attempts = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("log attempt")]
    assert attempts == ["log attempt: 1", "log attempt: 2", "log attempt: 3"]
    assert last_line(result.stdout) == "final: voicemail"


def test_a_session_still_running_exits_zero_and_says_where() -> None:
    result = orsguard("run", RUNAWAY, "--virtual-time")
    assert result.returncode == 0, result.stderr
    assert last_line(result.stdout) == "running in: idle"


def test_event_data_is_json() -> None:
    result = orsguard("run", RUNAWAY, "--event", 'call.arrived={"ani": "5551234"}', "--limit",
                      "max-microstep-count=3")
    assert result.returncode == 3
    assert 'event call.arrived {"ani": "5551234"}' in result.stdout


def test_limit_option_changes_which_limit_fires() -> None:
    result = orsguard("run", RUNAWAY, "--event", "call.arrived", "--limit", "max-state-entry-count=5")
    assert result.returncode == 3, result.stderr
    outcome = last_line(result.stdout)
    assert outcome.startswith("terminated: max-state-entry-count=5 exceeded (observed 6)")
    assert "entering route" in outcome


def test_limit_zero_switches_a_limit_off() -> None:
    result = orsguard("run", RUNAWAY, "--event", "call.arrived", "--limit", "max-microstep-count=0",
                      "--limit", "max-state-entry-count=50")
    assert result.returncode == 3
    assert "max-state-entry-count=50 exceeded" in last_line(result.stdout)


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("bogus=5", "max-microstep-count"),
        ("max-microstep-count", "OPTION=VALUE"),
        ("max-microstep-count=abc", "not a number"),
        ("max-microstep-count=-1", ">= 0"),
        ("max-microstep-count=2.5", "whole number"),
    ],
)
def test_bad_limit_exits_2_with_a_message(limit: str, message: str) -> None:
    result = orsguard("run", RUNAWAY, "--event", "call.arrived", "--limit", limit)
    assert result.returncode == 2
    assert message in result.stderr
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
    path.write_text('<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0">\n'
                    '<state id="a">\n  <transition event="e" target="nowhere"/>\n</state>\n</scxml>\n')
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
    assert last_line(result.stdout).startswith("terminated: max-microstep-count=7 exceeded (observed 8)")


def test_limit_flag_overrides_the_options_file(tmp_path: Path) -> None:
    cfg = options_file(tmp_path, "max-microstep-count=7\n")
    result = orsguard("run", RUNAWAY, "--event", "call.arrived", "--options", cfg, "--limit",
                      "max-microstep-count=11")
    assert result.returncode == 3, result.stderr
    assert last_line(result.stdout).startswith("terminated: max-microstep-count=11 exceeded (observed 12)")


def test_options_file_process_event_timeout_is_in_milliseconds(tmp_path: Path) -> None:
    spin = tmp_path / "spin.scxml"
    spin.write_text(SPIN)
    cfg = options_file(tmp_path, "process-event-timeout=300\n")
    result = orsguard("run", spin, "--event", "go", "--options", cfg)
    assert result.returncode == 3, result.stderr
    assert last_line(result.stdout).startswith("terminated: process-event-timeout=0.3 exceeded")


def test_limit_flag_overrides_the_file_process_event_timeout_in_seconds(tmp_path: Path) -> None:
    spin = tmp_path / "spin.scxml"
    spin.write_text(SPIN)
    cfg = options_file(tmp_path, "process-event-timeout=300\n")
    result = orsguard("run", spin, "--event", "go", "--options", cfg, "--limit", "process-event-timeout=0.2")
    assert result.returncode == 3, result.stderr
    assert last_line(result.stdout).startswith("terminated: process-event-timeout=0.2 exceeded")


def test_environment_overrides_the_options_file(tmp_path: Path) -> None:
    cfg = options_file(tmp_path, "max-microstep-count=7\n")
    result = orsguard("run", RUNAWAY, "--event", "call.arrived", "--options", cfg,
                      env={"ORSGUARD_SCXML_MAX_MICROSTEP_COUNT": "9"})
    assert result.returncode == 3, result.stderr
    assert "max-microstep-count=9 exceeded" in last_line(result.stdout)


def test_environment_applies_without_an_options_file() -> None:
    result = orsguard("run", RUNAWAY, "--event", "call.arrived", env={"ORSGUARD_SCXML_MAX_MICROSTEP_COUNT": "9"})
    assert "max-microstep-count=9 exceeded" in last_line(result.stdout)


def test_bad_value_in_the_options_file_exits_1_naming_file_and_line(tmp_path: Path) -> None:
    cfg = options_file(tmp_path, "max-pending-events=10\nmax-microstep-count=-5\n")
    result = orsguard("run", RUNAWAY, "--event", "call.arrived", "--options", cfg)
    assert result.returncode == 1
    assert f"{cfg}:6:" in result.stderr
    assert "max-microstep-count" in result.stderr
    assert "terminated" not in result.stdout


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
