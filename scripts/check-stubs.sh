#!/usr/bin/env bash
# Check the stubs of the compiled modules (orsguard/_core.pyi,
# orsguard/datamodels/_quickjs.pyi) against the modules with mypy's stubtest: a name,
# parameter or type the stub and the module disagree on fails the check (exit 1).
# scripts/stubtest-allowlist.txt lists, with reasons, what Cython adds that no stub
# declares. Run after building the core (pip install -e '.[test]').
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
"$python" -m mypy.stubtest orsguard._core orsguard.datamodels._quickjs --allowlist scripts/stubtest-allowlist.txt
