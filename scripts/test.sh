#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, check the tree and run the tests.
#   - Mosquitto, promtool and Graphviz from Debian (scripts/install-services.sh)
#   - a virtualenv in .venv with orsguard built in place (the Cython core) and the test extras
#   - the checks, each failing the run on any finding: ruff check, ruff format --check,
#     mypy --strict over the package, cython-lint over the Cython sources, the stub check
#     (scripts/check-stubs.sh); then pytest
# Extra arguments go to pytest, e.g.  scripts/test.sh -k limits
# A quicker local run leaves out the long cases (fuzzing, brokers restarted, wall-clock waits):
#   scripts/test.sh -m "not slow"
# CI (.ci/run) passes no arguments, so it runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-services.sh

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

# The tools of the virtualenv first: cython-lint runs pycodestyle by name.
export PATH="$PWD/.venv/bin:$PATH"

# Checks first: CI fails on any finding, as it fails on a test.
ruff check .
ruff format --check .
mypy --strict -p orsguard
cython-lint orsguard
bash scripts/check-stubs.sh

python -m pytest "$@"
