#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine and run it.
#   - Mosquitto, promtool and Graphviz from Debian (scripts/install-services.sh)
#   - a virtualenv in .venv with orsguard built in place (the Cython core) and the test extras
#   - ruff over the whole tree, mypy over the package, then pytest
# Extra arguments go to pytest, e.g.  scripts/test.sh -k limits
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-services.sh

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

# Lint first: CI fails on any finding, as it fails on a test.
.venv/bin/ruff check .
.venv/bin/mypy orsguard

.venv/bin/python -m pytest "$@"
