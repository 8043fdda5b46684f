"""``orsguard lint``: each check on small documents, checked against real runs, and the W3C suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import orsguard
from orsguard.lint import Finding, lint_file
from tests.conftest import ROOT, cli
from tests.w3c_runner import load_cases

HEAD = '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" datamodel="ecmascript"'


def write(tmp_path: Path, body: str, initial: str = "idle", name: str = "doc.scxml") -> Path:
    path = tmp_path / name
    path.write_text(f'{HEAD} initial="{initial}">\n{body}\n</scxml>\n')
    return path


def only(findings: list[Finding], check: str) -> list[Finding]:
    return [f for f in findings if f.check == check]


def stopped_by(path: Path, *events: str) -> str | None:
    """The option that stops a real run; a 0.5 s process-event-timeout keeps a self-sending loop short."""
    doc = orsguard.load(str(path))
    session = orsguard.Session(
        doc, clock=orsguard.VirtualClock(), limits=orsguard.Limits(process_event_timeout=0.5), on_log=lambda *a: None
    )
    session.start()
    for event in events:
        if session.running:
            session.send(event)
    session.run(5)
    return session.termination.option if session.termination is not None else None


# ---------------------------------------------------------------- the examples


def test_runaway_example_is_a_certain_loop_at_its_line() -> None:
    findings = lint_file(ROOT / "examples/runaway.scxml")
    assert [(f.line, f.severity, f.check) for f in findings] == [(20, "error", "eventless-loop")]
    f = findings[0]
    assert f.transitions == ["route -> retry", "retry -> route"]
    assert f.option == "max-microstep-count" and "max-microstep-count" in f.message
    assert "agentsFree > 0" in f.message  # the only way out is named
    assert stopped_by(ROOT / "examples/runaway.scxml", "call.arrived") == f.option


def test_spin_and_overflow_bounce_examples_are_certain_loops() -> None:
    spin = lint_file(ROOT / "examples/documents/spin.scxml")
    assert [(f.line, f.severity) for f in spin] == [(10, "error")]
    bounce = lint_file(ROOT / "examples/overflow-bounce.scxml")
    assert [(f.line, f.severity, f.check) for f in bounce] == [(16, "error", "event-loop")]
    assert stopped_by(ROOT / "examples/overflow-bounce.scxml", "call.arrived") == bounce[0].option


@pytest.mark.parametrize(
    "name",
    [
        "examples/retry-with-delay.scxml",
        "examples/documents/pingpong.scxml",
        "examples/documents/greeter.scxml",
        "examples/documents/router.scxml",
    ],
)
def test_clean_examples_have_no_findings(name: str) -> None:
    assert lint_file(ROOT / name) == []


# ---------------------------------------------------------------- loops, checked against real runs


LOOPS = {
    "eventless self loop": (
        '<state id="idle"><transition event="go" target="a"/></state>\n<state id="a"><transition target="a"/></state>',
        "error",
        "max-microstep-count",
    ),
    "child re-entered from its parent": (
        '<state id="idle"><transition event="go" target="p"/></state>\n'
        '<state id="p"><transition target="c"/><state id="c"/></state>',
        "error",
        "max-microstep-count",
    ),
    "raise in transition content": (
        '<state id="idle"><transition event="go"><raise event="tick"/></transition>\n'
        '  <transition event="tick"><raise event="tick"/></transition></state>',
        "error",
        "max-microstep-count",
    ),
    "send to #_internal": (
        '<state id="idle"><transition event="go" target="a"/></state>\n'
        '<state id="a"><onentry><send event="t" target="#_internal"/></onentry>'
        '<transition event="t" target="a"/></state>',
        "error",
        "max-microstep-count",
    ),
    "zero-delay self send between states": (
        '<state id="idle"><transition event="go" target="a"/></state>\n'
        '<state id="a"><onentry><send event="t" delay="0s"/></onentry><transition event="t" target="b"/></state>\n'
        '<state id="b"><transition target="a"/></state>',
        "error",
        "max-state-entry-count",
    ),
    "zero-delay targetless self send": (
        '<state id="idle"><transition event="go"><send event="t"/></transition>\n'
        '  <transition event="t"><send event="t"/></transition></state>',
        "error",
        "process-event-timeout",
    ),
    "conditional eventless loop": (
        '<datamodel><data id="n" expr="0"/></datamodel>\n'
        '<state id="idle"><transition event="go" target="a"/></state>\n'
        '<state id="a"><transition cond="n &gt;= 0" target="b"/></state>\n'
        '<state id="b"><transition target="a"/></state>',
        "warning",
        "max-microstep-count",
    ),
    "raise inside if": (
        '<state id="idle"><transition event="go" target="a"/></state>\n'
        '<state id="a"><onentry><if cond="true"><raise event="t"/></if></onentry>'
        '<transition event="t" target="a"/></state>',
        "warning",
        "max-microstep-count",
    ),
}


@pytest.mark.parametrize("name", list(LOOPS))
def test_loop_is_reported_with_the_option_that_really_stops_it(tmp_path: Path, name: str) -> None:
    body, severity, option = LOOPS[name]
    path = write(tmp_path, body)
    loops = [f for f in lint_file(path) if f.check.endswith("loop")]
    assert [(f.severity, f.option) for f in loops] == [(severity, option)]
    assert option in loops[0].message
    assert str(loops[0]).startswith(f"{path}:{loops[0].line}: {severity}: ")
    # Each of these documents really loops: the named option is the one that ends the run.
    assert stopped_by(path, "go") == option


def test_conditional_loop_warning_names_its_states_and_conds(tmp_path: Path) -> None:
    path = write(tmp_path, LOOPS["conditional eventless loop"][0])
    (f,) = lint_file(path)
    assert f.line == 4 and f.states == ["a", "b"]
    assert "'a', 'b'" in f.message and "n >= 0" in f.message


@pytest.mark.parametrize(
    "body",
    [
        # a delayed send waits for the clock: each lap needs time to pass, no loop without outside help
        '<state id="idle"><transition event="go" target="a"/></state>\n'
        '<state id="a"><onentry><send event="t" delay="1s"/></onentry><transition event="t" target="a"/></state>',
        # the raised event is not the one the transition waits for
        '<state id="idle"><transition event="go" target="a"/></state>\n'
        '<state id="a"><onentry><raise event="other"/></onentry><transition event="t" target="a"/></state>',
        # the child's eventless transition always wins over its parent's and leaves for a final state
        '<state id="idle"><transition event="go" target="a"/></state>\n'
        '<state id="a"><transition target="p"/></state>\n'
        '<state id="p"><transition target="a"/><state id="c"><transition target="done"/></state></state>\n'
        '<final id="done"/>',
        # an eventless transition to a final state
        '<state id="idle"><transition event="go" target="done"/></state><final id="done"/>',
    ],
    ids=["delayed-send", "other-event", "pre-empted-by-child", "final"],
)
def test_documents_without_a_loop_have_no_loop_finding(tmp_path: Path, body: str) -> None:
    path = write(tmp_path, body)
    assert [f for f in lint_file(path) if f.check.endswith("loop")] == []
    session = orsguard.Session(orsguard.load(str(path)), clock=orsguard.VirtualClock())
    session.start()
    for event in ("go", "t", "t", "t"):
        session.send(event)
    session.run(5)
    assert session.termination is None


# ---------------------------------------------------------------- dead parts


def test_unreachable_state_is_a_warning_at_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '<state id="idle"><transition event="go" target="done"/></state>\n'
        '<state id="orphan"><state id="inner"/></state>\n<final id="done"/>',
    )
    findings = lint_file(path)
    assert [(f.line, f.severity, f.check, f.states) for f in findings] == [(3, "warning", "unreachable", ["orphan"])]


def test_states_reached_by_initial_history_and_parallel_regions_are_not_unreachable(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '<state id="idle"><transition event="go" target="h"/>'
        '<transition event="y" target="p"/></state>\n'
        '<state id="p" initial="p2"><history id="h"><transition target="p1"/></history>'
        '<state id="p1"/><state id="p2"><transition event="x" target="par"/></state></state>\n'
        '<parallel id="par"><state id="r1"/><state id="r2"><state id="r21"/></state></parallel>',
    )
    assert only(lint_file(path), "unreachable") == []
    # Without the way into p, its initial child p2 and the parallel state behind it are unreachable.
    path.write_text(path.read_text().replace('<transition event="y" target="p"/>', ""))
    assert [f.states for f in only(lint_file(path), "unreachable")] == [["p2"], ["par"]]


@pytest.mark.parametrize(
    ("first", "second", "shadowed"),
    [
        ('event="e"', 'event="e"', True),
        ('event="e"', 'event="e" cond="true"', True),
        ('event="e.*"', 'event="e.sub"', True),
        ('event="*"', 'event="anything"', True),
        ("", "", True),  # two eventless transitions
        ('event="e" cond="x"', 'event="e"', False),  # the earlier one has a cond
        ('event="e.sub"', 'event="e"', False),  # the later one matches more
        ('event="e f"', 'event="f"', True),
        ('event="f"', 'event="e f"', False),
    ],
)
def test_transition_pre_empted_by_an_earlier_one(tmp_path: Path, first: str, second: str, shadowed: bool) -> None:
    path = write(
        tmp_path,
        '<datamodel><data id="x" expr="false"/></datamodel>\n'
        f'<state id="idle"><transition {first} target="a"/>\n'
        f'  <transition {second} target="b"/></state>\n'
        '<final id="a"/><final id="b"/>',
    )
    found = only(lint_file(path), "shadowed")
    assert [(f.line, f.severity) for f in found] == ([(4, "warning")] if shadowed else [])
    if shadowed:
        assert "line 3" in found[0].message


# ---------------------------------------------------------------- the W3C suite: no false alarms


def test_w3c_documents_give_no_loop_error_and_no_visited_state_is_unreachable() -> None:
    """Every W3C test reaches pass, so a certain loop or an unreachable state it entered is a false alarm."""
    checked = 0
    for case in load_cases():
        if case.basichttp:
            continue
        findings = lint_file(case.path, check_expressions=False)
        errors = [str(f) for f in findings if f.severity == "error"]
        assert errors == [], case.name
        doc = orsguard.load(str(case.path), check_expressions=False)
        session = orsguard.Session(doc, clock=orsguard.VirtualClock(), on_log=lambda *a: None)
        session.start()
        session.run(30)
        entered = {s for s in doc.state_ids if session.entry_count(s)}
        flagged = {s for f in only(findings, "unreachable") for s in f.states}
        assert not entered & flagged, case.name
        checked += 1
    assert checked > 180


# ---------------------------------------------------------------- the command


def test_cli_prints_file_line_and_exits_1_on_errors() -> None:
    result = cli("lint", "examples/runaway.scxml", "examples/retry-with-delay.scxml")
    assert result.returncode == 1
    assert result.stdout.startswith("examples/runaway.scxml:20: error: certain infinite eventless loop")
    assert "1 error, 0 warnings in 2 documents" in result.stderr


def test_cli_warnings_exit_0_unless_strict(tmp_path: Path) -> None:
    path = write(tmp_path, LOOPS["conditional eventless loop"][0])
    assert cli("lint", path).returncode == 0
    strict = cli("lint", "--strict", path)
    assert strict.returncode == 1
    assert f"{path}:4: warning:" in strict.stdout


def test_cli_json_lists_findings() -> None:
    result = cli("lint", "--json", "examples/runaway.scxml")
    data = json.loads(result.stdout)
    assert data["errors"] == 1 and data["warnings"] == 0
    assert data["findings"][0]["transitions"] == ["route -> retry", "retry -> route"]


@pytest.mark.parametrize("content", [b"", b"\x00\xff\xfe binary", b"<scxml", b"<notscxml/>", b"\xef\xbb\xbfjunk"])
def test_cli_reports_a_document_that_does_not_load_and_goes_on(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.scxml"
    bad.write_bytes(content)
    result = cli("lint", bad, "examples/runaway.scxml", tmp_path / "absent.scxml", tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{bad}:" in result.stdout and f"{tmp_path / 'absent.scxml'}:1: error:" in result.stdout
    assert "examples/runaway.scxml:20: error:" in result.stdout


def test_cli_without_documents_is_a_usage_error() -> None:
    assert cli("lint").returncode == 2


def test_a_long_loop_is_one_short_message(tmp_path: Path) -> None:
    n = 3000
    states = "\n".join(
        f'<state id="s{i}"><transition cond="n &gt; 0" target="s{(i + 1) % n}"/></state>' for i in range(n)
    )
    path = tmp_path / "long.scxml"
    path.write_text(f'{HEAD} initial="s0">\n<datamodel><data id="n" expr="1"/></datamodel>\n{states}\n</scxml>\n')
    (f,) = lint_file(path)
    assert f.severity == "warning" and len(f.transitions) == n
    assert len(f.message) < 1500 and "(2992 more)" in f.message
