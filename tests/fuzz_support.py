"""Shared by the guard-integrity and fuzz tests: run hostile code in a child interpreter.

A probe that may hang or crash the interpreter (a segfault in the JavaScript
engine, a script that never stops) runs in a fresh ``python -c`` under a wall
timeout and an address-space cap, so a hang or a crash is a test failure with
a message instead of a stuck or dead suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest

#: Address-space cap of a child: a probe that reads /dev/zero fails there, not on the machine.
CHILD_MEMORY = 2 << 30

#: Run by every child before its probe.
PRELUDE = f"""\
import resource
resource.setrlimit(resource.RLIMIT_AS, ({CHILD_MEMORY}, {CHILD_MEMORY}))
import json, sys, time
import orsguard
from orsguard import Limits, VirtualClock, RealClock, Session, DocumentError

def scxml(body, initial="a", datamodel="ecmascript", head=""):
    return ('<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" '
            f'datamodel="{{datamodel}}" initial="{{initial}}">{{head}}{{body}}</scxml>')

def report(**fields):
    print("RESULT " + json.dumps(fields), flush=True)
"""


@dataclass(frozen=True)
class ChildResult:
    """What a child printed; ``result`` holds the fields of its last ``report(...)``."""

    returncode: int
    stdout: str
    stderr: str
    result: dict


def spawn(code: str, *args: str) -> subprocess.Popen:
    """Start ``code`` (after :data:`PRELUDE`) in a child; the caller waits for it."""
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    return subprocess.Popen(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def finish(proc: subprocess.Popen, what: str, timeout: float) -> ChildResult:
    """Wait for a child of :func:`spawn`; fail the test on a hang, a crash or a traceback."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{what}: hung (no end within {timeout:g} s of wall time)\n{_tail(out, err)}")
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        pytest.fail(f"{what}: the interpreter crashed ({name})\n{_tail(out, err)}")
    if proc.returncode != 0:
        pytest.fail(f"{what}: failed with exit status {proc.returncode}\n{_tail(out, err)}")
    result: dict = {}
    for line in out.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
    return ChildResult(proc.returncode, out, err, result)


def isolated(code: str, *args: str, what: str = "probe", timeout: float = 30.0) -> dict:
    """Run ``code`` in a child and return the fields of its ``report(...)``.

    The child's own assertions count: an ``AssertionError`` there fails the
    test with the child's traceback.
    """
    return finish(spawn(code, *args), what, timeout).result


def _tail(out: str, err: str, lines: int = 25) -> str:
    text = (out + "\n" + err).strip().splitlines()
    return "\n".join(text[-lines:])
