"""Scenario files: an SCXML document, the events to send it and what must follow (``orsguard test``).

For every ``NAME.scxml`` with a ``NAME.json`` beside it. The JSON is SCION's
test format::

    {"initialConfiguration": ["idle"],
     "events": [{"event": {"name": "call.arrived", "data": {"ani": "555"}},
                 "after": 0, "nextConfiguration": ["menu"]}]}

Configurations are the active atomic states; a session that ended in a
top-level ``<final>`` has the configuration ``[that final's id]``. ``after``
moves the session's virtual clock that many milliseconds before the event
(a step without ``event`` only lets time pass). orsguard's own keys:

- top level: ``limits`` (ORS option names), ``params`` (values for top-level
  ``<data>``, as an invoke's parameters), ``strict`` (default true: an
  unexpected ``error.*`` event fails the scenario), ``expectErrors`` (event
  names that must be raised), ``initialData`` and ``initialOutbox`` (checked
  after the start like ``initialConfiguration``);
- per step: ``data`` (expected values of the named variables), ``outbox``
  (the sends that left the session during the step, in order, each matched on
  the keys it gives: ``event``, ``target``, ``type``, ``data``, ``delay`` in
  milliseconds), ``termination`` (the ORS option whose limit stopped the
  session, or null for "not stopped by a limit").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orsguard.coverage import Coverage
from orsguard.errors import DocumentError, OrsguardError
from orsguard.records import Sent, StrictError
from orsguard.session import Session
from orsguard.testing import Harness, limits_from_options

_TOP_KEYS = {
    "initialConfiguration",
    "events",
    "limits",
    "params",
    "strict",
    "expectErrors",
    "initialData",
    "initialOutbox",
}
_STEP_KEYS = {"event", "after", "nextConfiguration", "data", "outbox", "termination"}
_SENT_KEYS = {"event", "target", "type", "data", "delay"}


class ScenarioError(OrsguardError):
    """A scenario that failed: its message says which step and what differed."""


@dataclass
class Scenario:
    """A scenario file and its document; ``classname`` is its directory relative to the path searched."""

    document: Path
    file: Path
    classname: str

    @property
    def name(self) -> str:
        return self.file.stem


@dataclass
class Result:
    scenario: Scenario
    failure: str | None
    steps: int
    seconds: float

    @property
    def passed(self) -> bool:
        return self.failure is None


def find(paths: list[str]) -> list[Scenario]:
    """The scenarios under each path: a directory (searched recursively), a ``.json`` or a ``.scxml`` file."""
    found: list[Scenario] = []
    for given in paths:
        root = Path(given)
        if root.is_dir():
            for file in sorted(root.rglob("*.json")):
                document = file.with_suffix(".scxml")
                if document.is_file():
                    found.append(Scenario(document, file, file.parent.relative_to(root).as_posix()))
        elif root.is_file():
            file, document = root.with_suffix(".json"), root.with_suffix(".scxml")
            if not (file.is_file() and document.is_file()):
                raise FileNotFoundError(f"{given}: needs both {document.name} and {file.name}")
            found.append(Scenario(document, file, "."))
        else:
            raise FileNotFoundError(f"{given}: no such file or directory")
    return found


def run(scenario: Scenario, *, coverage: Coverage | None = None) -> Result:
    """Run one scenario on a virtual clock; the result says what failed first."""
    started = time.perf_counter()
    steps = 0
    harness = Harness(coverage=coverage)
    try:
        spec = _read(scenario.file)
        document = harness.document(scenario.document)
        params = _dict(spec, "params")
        for name in params or ():
            if name not in document.data_ids:
                raise ScenarioError(f"params: the document has no data {name!r}")
        try:
            limits = limits_from_options(_dict(spec, "limits"))
        except (ValueError, TypeError) as exc:
            raise ScenarioError(f"limits: {exc}") from None
        session = harness(document, limits=limits, data=params, strict=_bool(spec, "strict", True))
        for name in _list(spec, "expectErrors"):
            if not isinstance(name, str):
                raise ScenarioError("expectErrors must list event names")
            session.expect_error(name)
        _expect(
            session,
            "start",
            {
                "nextConfiguration": spec.get("initialConfiguration"),
                "data": spec.get("initialData"),
                "outbox": spec.get("initialOutbox"),
            },
            0,
        )
        for i, step in enumerate(_list(spec, "events")):
            where = f"events[{i}]"
            if not isinstance(step, dict):
                raise ScenarioError(f"{where} must be an object")
            unknown = set(step) - _STEP_KEYS
            if unknown:
                raise ScenarioError(f"{where}: unknown key {sorted(unknown)[0]!r}")
            sent_before = len(session.outbox)
            after = step.get("after", 0)
            if isinstance(after, bool) or not isinstance(after, (int, float)) or not math.isfinite(after) or after < 0:
                raise ScenarioError(f"{where}.after must be a number of milliseconds >= 0")
            if after:
                session.advance(after / 1000.0)
            event = step.get("event")
            label = f"step {i + 1}"
            if event is not None:
                if not isinstance(event, dict) or not isinstance(event.get("name"), str) or not event["name"]:
                    raise ScenarioError(f"{where}.event must be an object with a 'name'")
                label += f" (event {event['name']})"
                if session.running:
                    session.send(event["name"], event.get("data"))
            _expect(session, label, step, sent_before)
            steps += 1
        harness.close()
    except (ScenarioError, DocumentError, StrictError) as exc:
        try:
            harness.close(expectations=False)
        except StrictError:
            pass  # the first failure is the one reported
        return Result(scenario, str(exc), steps, time.perf_counter() - started)
    return Result(scenario, None, steps, time.perf_counter() - started)


def _read(file: Path) -> dict[str, Any]:
    try:
        with open(file, encoding="utf-8") as f:
            spec = json.load(f)
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read {file}: {exc}") from None
    except ValueError as exc:
        raise ScenarioError(f"{file} is not JSON: {exc}") from None
    except RecursionError:
        raise ScenarioError(f"{file} nests too deeply") from None
    if not isinstance(spec, dict):
        raise ScenarioError(f"{file}: a scenario is a JSON object")
    unknown = set(spec) - _TOP_KEYS
    if unknown:
        raise ScenarioError(f"unknown key {sorted(unknown)[0]!r}")
    return spec


def _dict(spec: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = spec.get(key)
    if value is not None and not isinstance(value, dict):
        raise ScenarioError(f"{key} must be an object")
    return value


def _list(spec: dict[str, Any], key: str) -> list[Any]:
    value = spec.get(key, [])
    if not isinstance(value, list):
        raise ScenarioError(f"{key} must be a list")
    return value


def _bool(spec: dict[str, Any], key: str, default: bool) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise ScenarioError(f"{key} must be true or false")
    return value


def configuration(session: Session) -> list[str]:
    """SCION's view: the active atomic states, or the top-level final the session ended in."""
    if session.final is not None:
        return [session.final]
    return sorted(session.atomic_configuration)


def _expect(session: Session, label: str, step: dict[str, Any], sent_before: int) -> None:
    wanted = step.get("nextConfiguration")
    if wanted is not None:
        if not isinstance(wanted, list) or not all(isinstance(s, str) for s in wanted):
            raise ScenarioError(f"{label}: a configuration is a list of state ids")
        got = configuration(session)
        if set(wanted) != set(got):
            raise ScenarioError(f"{label}: expected configuration {sorted(set(wanted))}, got {got}" + _why(session))
    values = step.get("data")
    if values is not None:
        if not isinstance(values, dict):
            raise ScenarioError(f"{label}: data must be an object")
        for name, value in values.items():
            if name not in session.data:
                raise ScenarioError(f"{label}: the document has no data {name!r}")
            try:
                got_value = session.data[name]
            except OrsguardError as exc:
                raise ScenarioError(f"{label}: cannot read data {name!r}: {exc}") from None
            if got_value != value:
                raise ScenarioError(f"{label}: expected data {name} = {json.dumps(value)}, got {got_value!r}")
    sends = step.get("outbox")
    if sends is not None:
        _expect_sends(label, sends, session.outbox[sent_before:])
    if "termination" in step:
        option = step["termination"]
        got_option = session.termination.option if session.termination is not None else None
        if option != got_option:
            raise ScenarioError(
                f"{label}: expected termination {option!r}, got "
                + (str(session.termination) if session.termination else "none")
            )


def _why(session: Session) -> str:
    if session.termination is not None:
        return f" (stopped: {session.termination})"
    if not session.running and session.final is None and session.end_reason:
        return f" (ended: {session.end_reason})"
    return ""


def _expect_sends(label: str, wanted: Any, sent: list[Sent]) -> None:
    if not isinstance(wanted, list) or not all(isinstance(w, dict) for w in wanted):
        raise ScenarioError(f"{label}: outbox must be a list of objects")
    if len(wanted) != len(sent):
        raise ScenarioError(
            f"{label}: expected {len(wanted)} sends to leave, got {len(sent)}: " + ", ".join(_show(s) for s in sent)
        )
    for n, (w, s) in enumerate(zip(wanted, sent, strict=True), 1):
        unknown = set(w) - _SENT_KEYS
        if unknown:
            raise ScenarioError(f"{label}: outbox entry {n}: unknown key {sorted(unknown)[0]!r}")
        for key, value in w.items():
            got = s.delay * 1000.0 if key == "delay" else getattr(s, key)
            if got != value:
                raise ScenarioError(
                    f"{label}: outbox entry {n}: expected {key} {json.dumps(value)}, got {got!r} ({_show(s)})"
                )


def _show(s: Sent) -> str:
    return f"{s.event} to {s.target or '(no target)'}"


# ---------------------------------------------------------------- reports


def junit_xml(results: list[Result]) -> bytes:
    """JUnit XML: one testcase per scenario (classname = its directory, name = the file's stem)."""
    failures = sum(1 for r in results if not r.passed)
    total = sum(r.seconds for r in results)
    suites = ET.Element("testsuites", tests=str(len(results)), failures=str(failures), errors="0", time=f"{total:.3f}")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="orsguard scenarios",
        tests=str(len(results)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{total:.3f}",
    )
    for r in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=_xml_text(r.scenario.classname),
            name=_xml_text(r.scenario.name),
            file=_xml_text(r.scenario.file.as_posix()),
            time=f"{r.seconds:.3f}",
        )
        if r.failure is not None:
            text = _xml_text(r.failure)
            failure = ET.SubElement(case, "failure", message=text.split("\n", 1)[0])
            failure.text = text
    xml: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    return xml


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot carry (a reason may quote any string)."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``orsguard test PATH... [--junit-xml FILE]``."""
    cmd = sub.add_parser("test", help="run scenario files (NAME.json beside NAME.scxml) and report each")
    cmd.add_argument("paths", nargs="+", metavar="PATH", help="a directory (searched recursively) or a scenario file")
    cmd.add_argument("--junit-xml", metavar="FILE", help="also write the results as JUnit XML")
    cmd.set_defaults(func=_cmd_test)


def _cmd_test(args: argparse.Namespace) -> int:
    out = sys.stdout
    try:
        scenarios = find(args.paths)
    except FileNotFoundError as exc:
        print(f"orsguard: {exc}", file=sys.stderr)
        return 2
    if not scenarios:
        print(f"orsguard: no scenarios (NAME.json beside NAME.scxml) under {' '.join(args.paths)}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    results = []
    for scenario in scenarios:
        try:
            result = run(scenario)
        except Exception as exc:  # a fault of orsguard's: report it as this scenario's failure, go on
            result = Result(scenario, f"internal error: {type(exc).__name__}: {exc}", 0, 0.0)
        results.append(result)
        shown = os.path.relpath(scenario.file)
        if result.passed:
            print(f"PASS {shown} ({result.steps} step{'' if result.steps == 1 else 's'})", file=out)
        else:
            print(f"FAIL {shown}: " + (result.failure or "").replace("\n", "\n    "), file=out)
    failed = sum(1 for r in results if not r.passed)
    print(f"{len(results) - failed} passed, {failed} failed in {time.perf_counter() - started:.2f} s", file=out)
    if args.junit_xml:
        try:
            with open(args.junit_xml, "wb") as f:
                f.write(junit_xml(results))
        except OSError as exc:
            print(f"orsguard: cannot write {args.junit_xml}: {exc.strerror}", file=sys.stderr)
            return 1
    return 1 if failed else 0
