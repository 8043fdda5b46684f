"""The pytest plugin, run inside pytest itself (pytester): the fixture, strict failures, coverage, scenarios."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import ROOT

pytest_plugins = ("pytester",)


IVR = """<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" initial="menu">
  <datamodel><data id="tries" expr="0"/></datamodel>
  <state id="menu">
    <onentry>
      <assign location="tries" expr="tries + 1"/>
      <send event="play" type="http://www.w3.org/TR/scxml/#BasicHTTPEventProcessor" target="http://media/play"/>
      <send id="t" event="timeout" delay="5s"/>
    </onentry>
    <transition event="dtmf" cond="_event.data.digit == '1'" target="sales"/>
    <transition event="timeout" cond="tries &lt; 2" target="menu"/>
    <transition event="timeout" target="operator"/>
  </state>
  <state id="sales"/>
  <final id="operator"/>
</scxml>
"""


@pytest.fixture
def ivr(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".scxml", ivr=IVR)
    return pytester


def test_the_fixture_starts_on_virtual_time_records_sends_and_cancels_at_teardown(ivr: pytest.Pytester) -> None:
    ivr.makepyfile(
        test_inner_ivr="""
        import orsguard

        kept = []

        def test_menu(scxml):
            call = scxml("ivr.scxml")
            kept.append(call)
            assert isinstance(call.clock, orsguard.VirtualClock) and call.clock.now() == 0
            assert [s.target for s in call.outbox] == ["http://media/play"]
            call.advance(5)
            assert call.data["tries"] == 2
            call.advance(5)
            assert call.final == "operator"

        def test_still_running_at_the_end(scxml):
            kept.append(scxml("ivr.scxml", data={"tries": 5}))
            kept[-1].advance(5)
            assert kept[-1].final == "operator"
            kept.append(scxml("ivr.scxml"))

        def test_afterwards():
            assert kept[-1].end_reason == "cancelled"
            assert [s.running for s in kept] == [False, False, False]
    """
    )
    ivr.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_an_error_execution_fails_a_strict_test_naming_the_event_and_line(ivr: pytest.Pytester) -> None:
    ivr.makepyfile(
        test_inner_strict="""
        def test_missing_field(scxml):
            call = scxml("ivr.scxml")
            call.send("dtmf", {})          # no digit: the cond is false, not an error
            call.send("dtmf", None)        # no data at all: _event.data.digit throws
            assert call.configuration == {"menu"}
    """
    )
    result = ivr.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*unexpected error.execution at ivr.scxml:9:5 <transition> (cond of menu -> sales): TypeError*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_expected_errors_and_non_strict_sessions_pass_and_missing_ones_fail(ivr: pytest.Pytester) -> None:
    ivr.makepyfile(
        test_inner_expect="""
        def test_expected(scxml):
            call = scxml("ivr.scxml").expect_error("error.execution", match="digit")
            call.send("dtmf", None)

        def test_not_strict(scxml):
            call = scxml("ivr.scxml", strict=False)
            call.send("dtmf", None)
            assert call.errors[0].tagname == "transition"

        def test_expected_but_never_raised(scxml):
            scxml("ivr.scxml").expect_error("error.communication")
    """
    )
    result = ivr.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_expected_but_never_raised*",
            "*expected error.communication in *ivr.scxml, but no such error event was raised*",
        ]
    )


def test_an_error_raised_while_cancelling_fails_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_inner_exit="""
        DOC = '''<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0">
          <state id="s"><onexit><script>undefinedCall()</script></onexit></state>
        </scxml>'''

        def test_exit(scxml):
            scxml(DOC)
    """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*unexpected error.execution at <string>:2:* <script>*undefinedCall*"])


def test_limits_by_option_name_and_a_bad_one(ivr: pytest.Pytester) -> None:
    ivr.makepyfile(
        test_inner_limits="""
        import pytest

        def test_limits(scxml):
            call = scxml("ivr.scxml", limits={"max-state-entry-count": 1})
            call.advance(5)
            assert call.termination.option == "max-state-entry-count"

        def test_bad(scxml):
            with pytest.raises(ValueError, match="unknown limit"):
                scxml("ivr.scxml", limits={"max-steps": 1})
    """
    )
    ivr.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_the_ivr_example_runs_under_pytest(pytester: pytest.Pytester) -> None:
    example = ROOT / "examples" / "ivr"
    for name in ("ivr-menu.scxml", "ivr-menu.json", "test_ivr_menu.py"):
        shutil.copy(example / name, pytester.path / name)
    assert len((example / "test_ivr_menu.py").read_text().splitlines()) < 30
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*ivr-menu.json::ivr-menu PASSED*"])


def test_the_routing_example_runs_under_pytest(pytester: pytest.Pytester) -> None:
    for path in (ROOT / "examples" / "routing").iterdir():
        shutil.copy(path, pytester.path / path.name)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


# ---------------------------------------------------------------- coverage


def test_coverage_per_document_in_the_terminal_and_as_json_and_html(ivr: pytest.Pytester) -> None:
    ivr.makefile(
        ".scxml",
        other='<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" initial="a">'
        '<state id="a"><transition event="go" target="b"/></state><state id="b"/></scxml>',
    )
    ivr.makepyfile(
        test_inner_cov="""
        def test_sales(scxml):
            scxml("ivr.scxml").send("dtmf", {"digit": "1"})

        def test_timeout_once(scxml):
            scxml("ivr.scxml").advance(5)

        def test_other(scxml):
            scxml("other.scxml")
    """
    )
    result = ivr.runpytest(
        "-p", "no:cacheprovider", "--scxml-coverage-report", "json:cov.json", "--scxml-coverage-report", "html:cov.html"
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*SCXML coverage*",
            "ivr.scxml: states 2/3 (66.7%), transitions 3/4 (75.0%), 2 sessions",
            "  never entered: operator",
            "  never taken: menu -> operator on timeout",
            "other.scxml: states 1/2 (50.0%), transitions 1/2 (50.0%), 1 session",
            "  never entered: b",
            "  never taken: a -> b on go",
        ]
    )
    report = json.loads((ivr.path / "cov.json").read_text())
    ivr_doc = next(d for d in report["documents"] if d["document"] == "ivr.scxml")
    assert ivr_doc["states"] == {
        "entered": 2,
        "total": 3,
        "percent": 66.7,
        "counts": {"menu": 3, "sales": 1, "operator": 0},
    }
    assert {"transition": "menu -> menu on timeout", "taken": 1} in ivr_doc["transitions"]["counts"]
    assert ivr_doc["never_taken"] == ["menu -> operator on timeout"]
    html = (ivr.path / "cov.html").read_text()
    assert "<h2>ivr.scxml</h2>" in html and "menu -&gt; operator on timeout" in html


def test_no_coverage_section_without_the_option(ivr: pytest.Pytester) -> None:
    ivr.makepyfile(test_inner_plain="def test_x(scxml):\n    scxml('ivr.scxml')\n")
    result = ivr.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "SCXML coverage" not in result.stdout.str()


def test_a_bad_coverage_report_option_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", "--scxml-coverage-report", "xml:out.xml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--scxml-coverage-report takes json:FILE or html:FILE*"])


# ---------------------------------------------------------------- scenarios as test items


def test_scenario_files_are_collected_and_failures_say_what_differed(ivr: pytest.Pytester) -> None:
    ivr.makefile(
        ".json",
        ivr=json.dumps(
            {
                "initialConfiguration": ["menu"],
                "events": [
                    {"after": 5000, "nextConfiguration": ["menu"], "data": {"tries": 2}},
                    {"event": {"name": "dtmf", "data": {"digit": "1"}}, "nextConfiguration": ["operator"]},
                ],
            }
        ),
    )
    ivr.makefile(".json", unrelated='{"not": "a scenario"}')
    result = ivr.runpytest("-p", "no:cacheprovider", "--scxml-coverage")
    result.assert_outcomes(failed=1)
    assert (
        "scenario ivr.json: step 2 (event dtmf): expected configuration ['operator'], got ['sales']"
        in result.stdout.str()
    )
    result.stdout.fnmatch_lines(["ivr.scxml: states 2/3*"])


def test_scenario_collection_can_be_switched_off(ivr: pytest.Pytester) -> None:
    ivr.makefile(".json", ivr='{"events": []}')
    ivr.makeini("[pytest]\nscxml_scenarios = false\n")
    result = ivr.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
