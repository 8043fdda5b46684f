"""The pytest plugin orsguard installs (entry point ``pytest11``).

- fixture ``scxml``: ``scxml(source, *, limits=None, data=None, strict=True, clock=None) -> Session``,
  started on a fresh VirtualClock, sends that leave it recorded in ``session.outbox``;
  unexpected ``error.*`` events fail the test, and its sessions are cancelled at teardown;
- ``--scxml-coverage`` and ``--scxml-coverage-report json:FILE|html:FILE``: states entered and
  transitions taken per document;
- every ``NAME.json`` beside a ``NAME.scxml`` is collected as a scenario (see orsguard.scenario);
  ini option ``scxml_scenarios = false`` turns that off.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from orsguard.coverage import Coverage
from orsguard.records import StrictError
from orsguard.scenario import Scenario, ScenarioError, run
from orsguard.testing import Harness

if TYPE_CHECKING:
    # pytest names the types of Item.repr_failure only in its private modules.
    from _pytest._code.code import TerminalRepr, TracebackStyle

_HARNESS = pytest.StashKey[Harness]()
_COVERAGE = pytest.StashKey[Coverage]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("orsguard", "SCXML testing (orsguard)")
    group.addoption(
        "--scxml-coverage", action="store_true", help="report states entered and transitions taken per SCXML document"
    )
    group.addoption(
        "--scxml-coverage-report",
        action="append",
        default=[],
        metavar="json:FILE|html:FILE",
        help="also write the SCXML coverage to FILE (repeatable); implies --scxml-coverage",
    )
    parser.addini(
        "scxml_scenarios", type="bool", default=True, help="collect NAME.json beside NAME.scxml as orsguard scenarios"
    )


def pytest_configure(config: pytest.Config) -> None:
    reports = config.getoption("--scxml-coverage-report")
    for spec in reports:
        kind, sep, target = spec.partition(":")
        if not sep or kind not in ("json", "html") or not target:
            raise pytest.UsageError(f"--scxml-coverage-report takes json:FILE or html:FILE, not {spec!r}")
    if config.getoption("--scxml-coverage") or reports:
        config.stash[_COVERAGE] = Coverage()


def _coverage(config: pytest.Config) -> Coverage | None:
    return config.stash.get(_COVERAGE, None)


@pytest.fixture
def scxml(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """Start SCXML sessions for a test: ``session = scxml("strategy.scxml", data={...})``.

    A relative path is looked up beside the test file first. Each session runs
    on its own VirtualClock, in strict mode (``strict=False`` or
    ``session.expect_error(...)`` to allow error events), with sends to other
    processors recorded in ``session.outbox`` instead of dispatched.
    """
    harness = Harness(base=Path(request.node.path).parent, coverage=_coverage(request.config))
    request.node.stash[_HARNESS] = harness
    yield harness
    _fail_on_errors(harness.close, expectations=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    # Strict errors fail the test itself (not only its teardown) once the body passed.
    result = yield
    harness = item.stash.get(_HARNESS, None)
    if harness is not None:
        _fail_on_errors(harness.check)
    return result


def _fail_on_errors(check: Callable[..., None], **kwargs: bool) -> None:
    try:
        check(**kwargs)
    except StrictError as exc:
        failure = str(exc)
    else:
        return
    pytest.fail(failure, pytrace=False)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if (
        file_path.suffix == ".json"
        and file_path.with_suffix(".scxml").is_file()
        and parent.config.getini("scxml_scenarios")
    ):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    """A scenario file: one test item."""

    def collect(self) -> Iterator[pytest.Item]:
        yield ScenarioItem.from_parent(self, name=self.path.stem)


class ScenarioItem(pytest.Item):
    """Runs the scenario on a virtual clock; fails with the first difference."""

    def runtest(self) -> None:
        scenario = Scenario(self.path.with_suffix(".scxml"), self.path, ".")
        result = run(scenario, coverage=_coverage(self.config))
        if result.failure is not None:
            raise ScenarioError(result.failure)

    def repr_failure(
        self, excinfo: pytest.ExceptionInfo[BaseException], style: TracebackStyle | None = None
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, ScenarioError):
            return f"scenario {self.path.name}: {excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"scenario {self.name}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    coverage = _coverage(config)
    if coverage is None:
        return
    coverage.harvest()
    terminalreporter.section("SCXML coverage")
    lines = coverage.report_lines() or ["no SCXML sessions were counted"]
    for line in lines:
        terminalreporter.write_line(line)
    for spec in config.getoption("--scxml-coverage-report"):
        kind, _, target = spec.partition(":")
        try:
            (coverage.write_json if kind == "json" else coverage.write_html)(target)
        except OSError as exc:
            terminalreporter.write_line(f"cannot write {target}: {exc.strerror}", red=True)
        else:
            terminalreporter.write_line(f"wrote {kind} coverage report to {target}")
