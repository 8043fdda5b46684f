"""The W3C SCXML 1.0 conformance suite (IRP), one test per start document.

Mandatory automatic tests, the optional ECMAScript-specific ones, 193 and the
BasicHTTP ones; manual and XPath tests are not part of it. A test passes when
its session ends in ``<final id="pass">``; the runner is shared with
``scripts/conformance_table.py`` (see ``tests/w3c_runner.py``).
"""

from __future__ import annotations

import pytest

from tests.w3c_runner import Case, load_cases, run_test, w3c_dir

try:
    CASES = load_cases()
    MISSING: str | None = None
except FileNotFoundError as exc:
    # Collected anyway so that test_suite_is_present fails with the reason instead of a skip.
    CASES = []
    MISSING = str(exc)


def test_suite_is_present() -> None:
    """The suite must be there and complete; a missing suite fails rather than passing silently."""
    if MISSING is not None:
        pytest.fail(MISSING)
    mandatory = {c.test_id for c in CASES if c.conformance == "mandatory"}
    optional = {c.test_id for c in CASES if c.conformance == "optional"}
    assert len(mandatory) == 159, f"expected 159 mandatory tests in {w3c_dir()}, found {len(mandatory)}"
    assert sum(c.conformance == "mandatory" for c in CASES) == 161, "test403 has three start documents"
    assert len(optional) == 33, f"expected 33 usable optional tests in {w3c_dir()}, found {len(optional)}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_w3c(case: Case) -> None:
    outcome = run_test(case)
    assert outcome.passed, f"{case.name} ({case.conformance}, spec {case.specnum}): {outcome.detail}"
