"""pytest-benchmark benchmarks of option files: check, show and migrate on 40,000 options.

Run explicitly (the test suite collects ``tests/`` only)::

    python -m pytest benchmarks/test_bench_options.py --benchmark-only

They report figures and assert only what each run produced, never a time.
The suite's ``test_check_migrate_and_show_do_work_linear_in_the_file`` guards
the linearity itself by counting executed lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

options = pytest.importorskip("orsguard.options")

N = 40_000

SHAPES = {
    # Unknown names in [scxml]: each is compared with the section's known names.
    "scxml-unknown": "[scxml]\n" + "".join(f"opt{i}=v{i}\n" for i in range(N)),
    # A vendor section, as real exports carry.
    "vendor": "[vendor]\n" + "".join(f"option-{i}=value {i}\n" for i in range(N)),
    # An 8.1.2 file with many [cluster] sections for migrate to delete.
    "clusters": "".join(f"[cluster]\nname=c{i}\n# next\n[scxml]\nx{i}=1\n" for i in range(N // 2)),
}


@pytest.fixture(params=sorted(SHAPES))
def option_file(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    path = tmp_path / "ors.cfg"
    path.write_text(SHAPES[request.param])
    return options.read(path)


def test_check(benchmark: Any, option_file: Any) -> None:
    problems = benchmark(options.check, option_file)
    assert len(problems) >= N // 2


def test_show(benchmark: Any, option_file: Any) -> None:
    settings = benchmark(options.effective, option_file, environ={})
    assert len(settings) >= N // 2


def test_migrate(benchmark: Any, option_file: Any) -> None:
    result = benchmark(options.migrate, option_file)
    assert result.data


def test_read(benchmark: Any, tmp_path: Path) -> None:
    path = tmp_path / "ors.cfg"
    path.write_text(SHAPES["vendor"])
    assert len(benchmark(options.read, path).entries) == N
