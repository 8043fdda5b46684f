"""``orsguard test``: scenario files in SCION's format, the report, the exit status and JUnit XML."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from orsguard import scenario
from orsguard.cli import main
from tests.conftest import ROOT

TOGGLE = """<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" initial="a">
  <datamodel><data id="flips" expr="0"/></datamodel>
  <state id="a"><transition event="t" target="b"><assign location="flips" expr="flips + 1"/></transition></state>
  <state id="b">
    <onentry><send id="back" event="t" delay="1s"/></onentry>
    <transition event="t" target="a"/>
    <transition event="end" target="done"/>
  </state>
  <final id="done"/>
</scxml>
"""


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


Run = Callable[..., Outcome]


@pytest.fixture
def orsguard(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """``orsguard ARGS`` in this process (the first test runs the real command)."""

    def run(*args: str | Path, cwd: Path = ROOT) -> Outcome:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        status = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return Outcome(status, out, err)

    return run


def write(directory: Path, name: str, spec: object, document: str = TOGGLE) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.scxml").write_text(document)
    path = directory / f"{name}.json"
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return path


def test_the_examples_and_the_w3c_corners_pass_with_junit_xml(tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORSGUARD_")}
    result = subprocess.run(
        [sys.executable, "-m", "orsguard.cli", "test", "examples", "tests/scenarios", "--junit-xml", str(report)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "PASS tests/scenarios/w3c/parallel-exit.json (8 steps)" in lines
    assert lines[-1].startswith("12 passed, 0 failed in ")
    suite = ET.parse(report).getroot()
    assert suite.tag == "testsuites" and suite.get("tests") == "12" and suite.get("failures") == "0"
    cases = {(c.get("classname"), c.get("name")) for c in suite.iter("testcase")}
    assert {
        ("w3c", "parallel-exit"),
        ("w3c", "history"),
        ("w3c", "internal-transitions"),
        ("w3c", "finals"),
        (".", "runaway"),
        (".", "retry-with-delay"),
        ("ivr", "ivr-menu"),
        ("routing", "routing"),
        ("documents", "pingpong"),
        ("documents", "router"),
    } <= cases
    assert len(cases) == 12


def test_a_failing_scenario_is_reported_and_exits_1(orsguard: Run, tmp_path: Path) -> None:
    write(
        tmp_path / "calls" / "inbound",
        "toggle",
        {
            "initialConfiguration": ["a"],
            "events": [
                {"event": {"name": "t"}, "nextConfiguration": ["b"], "data": {"flips": 1}},
                {"after": 1000, "nextConfiguration": ["b"]},
            ],
        },
    )
    write(
        tmp_path / "calls",
        "good",
        {"events": [{"event": {"name": "t"}}, {"event": {"name": "end"}, "nextConfiguration": ["done"]}]},
    )
    report = tmp_path / "out.xml"
    result = orsguard("test", tmp_path / "calls", "--junit-xml", report)
    assert result.returncode == 1
    assert result.stdout.splitlines()[:2] == [
        f"PASS {os.path.relpath(tmp_path / 'calls' / 'good.json', ROOT)} (2 steps)",
        f"FAIL {os.path.relpath(tmp_path / 'calls' / 'inbound' / 'toggle.json', ROOT)}: step 2: expected "
        "configuration ['b'], got ['a']",
    ]
    assert result.stdout.splitlines()[-1].startswith("1 passed, 1 failed")
    cases = {c.get("name"): c for c in ET.parse(report).getroot().iter("testcase")}
    assert cases["toggle"].get("classname") == "inbound" and cases["good"].get("classname") == "."
    failure = cases["toggle"].find("failure")
    assert failure is not None and "expected configuration" in failure.get("message", "")
    assert cases["good"].find("failure") is None


def test_a_file_path_runs_that_scenario_alone(orsguard: Run, tmp_path: Path) -> None:
    path = write(tmp_path, "one", {"initialConfiguration": ["a"]})
    for given in (path, path.with_suffix(".scxml")):
        result = orsguard("test", given)
        assert result.returncode == 0, result.stdout
        assert result.stdout.startswith("PASS ")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{not json", "is not JSON"),
        ("[1, 2]", "a scenario is a JSON object"),
        ({"initialConfiguration": ["a"], "evnets": []}, "unknown key 'evnets'"),
        ({"events": {"event": "t"}}, "events must be a list"),
        ({"events": [{"event": "t"}]}, "events[0].event must be an object with a 'name'"),
        ({"events": [{"event": {"data": 1}}]}, "events[0].event must be an object with a 'name'"),
        ({"events": [{"after": -5}]}, "events[0].after must be a number of milliseconds >= 0"),
        ({"events": [{"after": "1s"}]}, "events[0].after must be a number of milliseconds >= 0"),
        ({"events": [{"after": 1, "nextConfig": ["a"]}]}, "events[0]: unknown key 'nextConfig'"),
        ({"events": [7]}, "events[0] must be an object"),
        ({"initialConfiguration": "a"}, "a configuration is a list of state ids"),
        ({"initialData": {"nosuch": 1}}, "the document has no data 'nosuch'"),
        ({"initialData": {"flips": 1}}, "expected data flips = 1, got 0"),
        ({"initialOutbox": [{"event": "x"}]}, "expected 1 sends to leave, got 0"),
        ({"limits": {"max-steps": 3}}, "limits: unknown limit 'max-steps'"),
        ({"limits": {"max-microstep-count": -1}}, "limits: max-microstep-count must be >= 0"),
        ({"limits": [1]}, "limits must be an object"),
        ({"params": {"flipz": 1}}, "params: the document has no data 'flipz'"),
        (
            {
                "params": {"flips": 5},
                "initialData": {"flips": 5},
                "events": [{"event": {"name": "t"}}],
                "expectErrors": ["error.execution"],
            },
            "expected error.execution in ",
        ),
        ({"strict": "yes"}, "strict must be true or false"),
        ({"expectErrors": ["error.execution"]}, "expected error.execution in "),
        (
            {"events": [{"event": {"name": "t"}, "termination": "max-microstep-count"}]},
            "expected termination 'max-microstep-count', got none",
        ),
    ],
)
def test_bad_scenarios_fail_with_a_message_never_a_traceback(
    orsguard: Run, tmp_path: Path, spec: object, message: str
) -> None:
    write(tmp_path, "bad", spec)
    result = orsguard("test", tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert message in result.stdout, result.stdout


def test_a_document_that_does_not_load_fails_its_scenario(orsguard: Run, tmp_path: Path) -> None:
    write(tmp_path, "broken", {"events": []}, document="<scxml xmlns='http://www.w3.org/2005/07/scxml'><state")
    result = orsguard("test", tmp_path)
    assert result.returncode == 1
    assert "broken.scxml:1" in result.stdout and "malformed XML" in result.stdout


def test_an_unexpected_error_fails_the_scenario_unless_expected_or_not_strict(orsguard: Run, tmp_path: Path) -> None:
    document = TOGGLE.replace('expr="flips + 1"', 'expr="flips + nosuch"')
    write(tmp_path / "strict", "err", {"events": [{"event": {"name": "t"}, "nextConfiguration": ["b"]}]}, document)
    write(
        tmp_path / "expected",
        "err",
        {"expectErrors": ["error.execution"], "events": [{"event": {"name": "t"}}]},
        document,
    )
    write(tmp_path / "lenient", "err", {"strict": False, "events": [{"event": {"name": "t"}}]}, document)
    result = orsguard("test", tmp_path)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and "strict" in failed[0]
    assert "unexpected error.execution at" in failed[0] and "err.scxml:3:" in failed[0]
    assert "<assign>: ReferenceError: nosuch is not defined" in failed[0]


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["nowhere"], 2, "nowhere: no such file or directory"),
        (["empty"], 1, "no scenarios"),
        (["lonely.scxml"], 2, "needs both lonely.scxml and lonely.json"),
    ],
)
def test_bad_paths(orsguard: Run, tmp_path: Path, args: list[str], status: int, message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "lonely.scxml").write_text(TOGGLE)
    result = orsguard("test", *args, cwd=tmp_path)
    assert result.returncode == status
    assert message in result.stderr and "Traceback" not in result.stderr


def test_an_unwritable_junit_file_is_a_clear_error(orsguard: Run, tmp_path: Path) -> None:
    write(tmp_path, "ok", {})
    result = orsguard("test", tmp_path, "--junit-xml", tmp_path / "no" / "such" / "dir.xml")
    assert result.returncode == 1
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr


def test_outbox_steps_match_on_the_keys_given(orsguard: Run, tmp_path: Path) -> None:
    document = """<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" initial="s">
      <state id="s"><transition event="go">
        <send event="req" type="http://www.w3.org/TR/scxml/#BasicHTTPEventProcessor" target="http://x/"
              delay="250ms"><param name="n" expr="1"/></send>
      </transition></state></scxml>"""
    write(
        tmp_path / "ok",
        "sends",
        {
            "events": [
                {"event": {"name": "go"}, "outbox": []},
                {"after": 250, "outbox": [{"event": "req", "target": "http://x/", "data": {"n": 1}, "delay": 250}]},
            ]
        },
        document,
    )
    write(
        tmp_path / "wrong",
        "sends",
        {"events": [{"event": {"name": "go"}}, {"after": 250, "outbox": [{"event": "req", "data": {"n": 2}}]}]},
        document,
    )
    result = orsguard("test", tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("PASS") and "ok" in lines[0]
    assert lines[1].endswith("step 2: outbox entry 1: expected data {\"n\": 2}, got {'n': 1} (req to http://x/)")


def test_junit_xml_escapes_what_a_failure_says() -> None:
    case = scenario.Scenario(Path("a.scxml"), Path("a.json"), "dir & <more>")
    xml = scenario.junit_xml([scenario.Result(case, 'expected "<x>" & got ]]>', 1, 0.5)])
    root = ET.fromstring(xml)
    [testcase] = root.iter("testcase")
    assert testcase.get("classname") == "dir & <more>"
    assert testcase.find("failure").text == 'expected "<x>" & got ]]>'


def test_junit_xml_carries_control_characters_as_escapes() -> None:
    case = scenario.Scenario(Path("a.scxml"), Path("a.json"), ".")
    xml = scenario.junit_xml([scenario.Result(case, "reason: bad\x00\x01byte \ud800", 1, 0.1)])
    [failure] = ET.fromstring(xml).iter("failure")
    assert failure.text == "reason: bad\\x00\\x01byte \\xd800"


def test_a_deeply_nested_scenario_file_fails_cleanly(orsguard: Run, tmp_path: Path) -> None:
    write(tmp_path, "deep", "[" * 100000 + "]" * 100000)
    result = orsguard("test", tmp_path)
    assert result.returncode == 1
    assert "nests too deeply" in result.stdout or "is not JSON" in result.stdout
