"""Property-based fuzzing of load(), Session and the command line (hypothesis).

Contracts, each checked on every generated example:

* ``load()`` returns a Document or raises ``DocumentError`` (W3C documents
  mutated byte-wise and token-wise, and generated charts).
* A session of a loadable document, driven by generated events with hostile
  data on a virtual clock under small limits, raises nothing into the caller
  but documented errors (``ValueError``/``TypeError`` from ``send`` for data it
  cannot take, ``DocumentError`` from ``start``), never crashes or hangs the
  process, and never runs past a limit (peaks at most one over, and then
  terminated by that limit).
* ``orsguard options check|migrate|show`` and ``orsguard run`` on generated
  option files and arguments end with a documented exit status, never a
  traceback or a hang, and never change their input.

Every example runs in a worker process (``fuzz_worker.py``): a crash or a hang
fails the example, which hypothesis then shrinks. The default run is bounded
for CI (a fixed seed, about 2,000 examples in all, no shrinking); set
``ORSGUARD_FUZZ_EXAMPLES=N`` to run N random examples per test instead.
docs/fuzzing.md explains how to run longer and where regressions go.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import selectors
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz_support import CHILD_MEMORY
from tests.fuzz_worker import decode, encode
from tests.w3c_runner import w3c_dir

EXAMPLES = int(os.environ.get("ORSGUARD_FUZZ_EXAMPLES", "0"))
#: Seconds a worker may take for one job before the job counts as a hang.
JOB_TIMEOUT = 30.0
#: The same for one command: on a few small files it has no reason to take long.
CLI_TIMEOUT = 10.0


def fuzz_settings(default_examples: int) -> settings:
    """CI: a fixed seed and a small budget; ORSGUARD_FUZZ_EXAMPLES: that many random examples.

    CI does not shrink a failure (shrinking a hang can take minutes): the failing
    example is reported as found. Longer runs shrink it.
    """
    phases = tuple(Phase) if EXAMPLES else tuple(p for p in Phase if p is not Phase.shrink)
    return settings(
        max_examples=EXAMPLES or default_examples,
        derandomize=not EXAMPLES,
        phases=phases,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
    )


# ---------------------------------------------------------------- the worker process


class WorkerDied(Exception):
    """The worker crashed or hung on a job."""


class WorkerClient:
    """One ``fuzz_worker.py`` process, restarted after a crash or a hang."""

    def __init__(self, resources: Path) -> None:
        self.resources = resources
        self.proc: subprocess.Popen | None = None
        self.stderr = tempfile.TemporaryFile()

    def _start(self) -> subprocess.Popen:
        self.stderr.seek(0)
        self.stderr.truncate()
        return subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("fuzz_worker.py")), str(self.resources), str(CHILD_MEMORY)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=dict(os.environ, PYTHONFAULTHANDLER="1"),
        )

    def call(self, job: dict, timeout: float = JOB_TIMEOUT) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(encode(job) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout)
        if not ready:
            self.stop()
            raise WorkerDied(f"hung: no answer within {timeout:g} s\n{self._stderr_tail()}")
        line = proc.stdout.readline()
        if not line:
            self.stop()
            raise WorkerDied(f"crashed: exit status {proc.returncode}\n{self._stderr_tail()}")
        return decode(line)

    def _stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")[-3000:]

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    try:
                        pipe.close()
                    except BrokenPipeError:
                        pass


@pytest.fixture(scope="module")
def worker() -> Iterator[WorkerClient]:
    client = WorkerClient(w3c_dir() / "ecma")
    yield client
    client.stop()
    client.stderr.close()


def run(worker: WorkerClient, job: dict, timeout: float = JOB_TIMEOUT) -> dict:
    """One job; a crash or a hang fails the example with the job as its reproduction."""
    try:
        return worker.call(job, timeout)
    except WorkerDied as exc:
        pytest.fail(f"{job['kind']} job {_show(job)}: the worker {exc}")


def _show(job: dict) -> str:
    text = repr(job)
    return text if len(text) < 4000 else text[:4000] + "..."


# ---------------------------------------------------------------- W3C documents, mutated


def _w3c_documents() -> list[bytes]:
    folder = w3c_dir() / "ecma"
    return [p.read_bytes() for p in sorted(folder.glob("test*.scxml"))]


#: The documents to mutate; test_w3c_documents_are_there fails when they are missing.
W3C = _w3c_documents() or [b"<missing/>"]


def test_w3c_documents_are_there() -> None:
    assert len(W3C) > 150, f"the W3C documents to mutate are missing from {w3c_dir() / 'ecma'}"


#: Fragments a mutation may insert: SCXML syntax, hostile attribute values and encodings.
TOKENS = [
    b"<",
    b">",
    b"/>",
    b'"',
    b"'",
    b"&",
    b"&amp;",
    b"&lt;",
    b"&#0;",
    b"&#xD800;",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\xc3\xa9",
    b"\xed\xa0\x80",
    b'<state id="x">',
    b"</state>",
    b"<parallel>",
    b"</parallel>",
    b"<final/>",
    b'<transition target="pass fail"/>',
    b'<transition cond="undefinedVar"/>',
    b"<history/>",
    b"<initial/>",
    b' cond="',
    b' expr="',
    b' location="',
    b' target="',
    b' event="*"',
    b' id="for"',
    b' id="pass"',
    b' src="/dev/zero"',
    b' src="/proc/self/environ"',
    b' src="../../../etc/passwd"',
    b'<data id="for"/>',
    b'<data id="d" src="test446.txt"/>',
    b"<script>for(;;){}</script>",
    b"<script>while(true){}</script>",
    b"1)}); for(;;){} (function(){return (1",
    b'<!DOCTYPE scxml [<!ENTITY a "b">]>',
    b'<?xml version="1.0" encoding="UTF-8"?>',
    b'<?xml version="1.0" encoding="latin1"?>',
    b"<![CDATA[",
    b"]]>",
    b"<!--",
    b"-->",
    b'<invoke type="scxml"><content>',
    b"</content></invoke>",
    b'<param name="p"/>',
    b'<send event="e" delay="1s"/>',
    b'<raise event="e"/>',
    b'<foreach array="[1,2]" item="i"/>',
    b'\xc3\xa9="1"',
    b'xmlns:x="urn:x" x:y="1"',
    b"10n",
    b"2n**9999n",
    b"'\\ud800'",
    b"NaN",
    b"1e999",
    b"In('pass')",
    b"_event.data",
    b"Symbol()",
    b"new Proxy({}, {})",
    b"'x'.repeat(1e9)",
]

mutation = st.one_of(
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 64)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.sampled_from(TOKENS)),
    st.tuples(st.just("bytes"), st.floats(0, 1), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("duplicate"), st.floats(0, 1), st.integers(1, 200)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0)),
)


def mutate(data: bytes, mutations: list[tuple[str, float, Any]]) -> bytes:
    for op, where, arg in mutations:
        pos = int(where * len(data))
        if op == "delete":
            data = data[:pos] + data[pos + arg :]
        elif op in ("insert", "bytes"):
            data = data[:pos] + arg + data[pos:]
        elif op == "duplicate":
            data = data[:pos] + data[pos : pos + arg] + data[pos:]
        elif op == "truncate":
            data = data[:pos]
    return data


# ---------------------------------------------------------------- generated values, expressions, charts

STATE_IDS = [f"s{i}" for i in range(8)]
EVENT_NAMES = [
    "e",
    "f",
    "e.x",
    "error.execution",
    "done.state.s0",
    "done.invoke.c",
    "x" * 300,
    "",
    "a..b",
    ".",
    "\x00",
    "\ud800",
    "*",
    "e f",
]

hostile_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**53 - 2, max_value=2**70),
    st.sampled_from([10**400, -(10**400), 2**63, 2**64, -(2**53) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["\ud800", "\udfff", "a\udc80b", "\x00", "'); for(;;){} ('", "\u2028", "x" * 10_000]),
    st.binary(max_size=8),
    st.frozensets(st.integers(), max_size=3),
)
hostile_values = st.one_of(
    st.recursive(
        hostile_scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(
                st.one_of(st.text(max_size=5), st.integers(), st.sampled_from(["\ud800", "__proto__"])),
                inner,
                max_size=4,
            ),
        ),
        max_leaves=12,
    ),
    st.tuples(st.just("__deep__"), st.sampled_from(["list", "dict"]), st.sampled_from([100, 1000, 100_000])),
    st.just(("__cyclic__",)),
)

JS_ATOMS = [
    "0",
    "1",
    "-0",
    "1e308",
    "1e999",
    "NaN",
    "Infinity",
    "10n",
    "2n ** 4000n",
    "'s'",
    "'\\ud800'",
    "''",
    "null",
    "undefined",
    "true",
    "[]",
    "{}",
    "[1, [2, [3]]]",
    "undefinedVar",
    "d0",
    "d1",
    "_event",
    "_event.data",
    "_event.name",
    "_sessionid",
    "_ioprocessors",
    "In('s1')",
    "In(d0)",
    "Symbol('x')",
    "new Proxy({}, {})",
    "(function () { for (;;) {} })()",
    "(function f() { return f(); })()",
    "'x'.repeat(1 << 28)",
    "new Array(1e7).fill(0).length",
    "/(a+)+$/.test('a'.repeat(40) + 'b')",
    "JSON.parse('[' .repeat(1e5))",
    "({valueOf() { for (;;) {} }})",
    "Object.defineProperty",
    "eval('1 +')",
    "(() => { throw new Error('x'); })()",
    "globalThis",
    "this",
    "Math.random()",
    "Date.now()",
]
JS_OPS = [" + ", " - ", " * ", " / ", " == ", " === ", " < ", " && ", " || ", ", ", " in ", " instanceof "]

js_expressions = st.recursive(
    st.sampled_from(JS_ATOMS),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(JS_OPS), inner).map(lambda t: f"({t[0]}{t[1]}{t[2]})"),
        inner.map(lambda e: f"!{e}"),
        inner.map(lambda e: f"typeof {e}"),
        inner.map(lambda e: f"[{e}]"),
        inner.map(lambda e: f"({{k: {e}}})"),
        inner.map(lambda e: f"String({e})"),
        inner.map(lambda e: f"JSON.stringify({e})"),
        inner.map(lambda e: f"({e}).x"),
    ),
    max_leaves=6,
)
js_statements = st.one_of(
    js_expressions.map(lambda e: f"d0 = {e};"),
    js_expressions.map(lambda e: f"var t = {e};"),
    st.sampled_from(
        [
            "for (;;) {}",
            "while (true) {}",
            "throw 1;",
            "function g() { return In('s0'); }",
            "Object.prototype.x = 1;",
            "Array.prototype.slice = null;",
            "In = null;",
            "d1 = d1 + 1;",
            "Object.freeze(globalThis);",
            "delete globalThis.In;",
            "d0 = {valueOf() { for (;;) {} }};",
        ]
    ),
)


def attr(name: str, value: str | None) -> str:
    return "" if value is None else f" {name}={quoteattr(value)}"


@st.composite
def executable(draw: Any, depth: int = 0) -> str:
    kind = draw(st.sampled_from(["raise", "assign", "log", "send", "script", "foreach", "if", "cancel"]))
    expr = draw(js_expressions)
    if kind == "raise":
        return f"<raise{attr('event', draw(st.sampled_from(EVENT_NAMES[:6])))}/>"
    if kind == "assign":
        return (
            f"<assign{attr('location', draw(st.sampled_from(['d0', 'd1', 'd0.x', 'undeclared'])))}"
            f"{attr('expr', expr)}/>"
        )
    if kind == "log":
        return f'<log label="l"{attr("expr", expr)}/>'
    if kind == "send":
        delay = draw(st.sampled_from([None, "0s", "0.5s", "3s", "100ms"]))
        target = draw(st.sampled_from([None, None, "#_internal", "#_parent", "#_c", "#_scxml_nope", "http://x"]))
        return (
            f"<send{attr('event', draw(st.sampled_from(EVENT_NAMES[:6])))}{attr('delay', delay)}"
            f'{attr("target", target)} id="snd"><param name="p"{attr("expr", expr)}/></send>'
        )
    if kind == "script":
        return f"<script>{_escape(draw(js_statements))}</script>"
    if kind == "foreach":
        body = draw(executable(depth + 1)) if depth < 2 else ""
        return f'<foreach{attr("array", expr)} item="d1" index="d2">{body}</foreach>'
    if kind == "if":
        body = draw(executable(depth + 1)) if depth < 2 else ""
        return f"<if{attr('cond', expr)}>{body}<else/>{body}</if>"
    return '<cancel sendid="snd"/>'


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@st.composite
def charts(draw: Any) -> str:
    """A generated SCXML document: nested states, transitions, content, data, an invoke."""
    count = draw(st.integers(1, len(STATE_IDS)))
    ids = STATE_IDS[:count]
    parents: dict[str, str | None] = {ids[0]: None}
    for i, sid in enumerate(ids[1:], 1):
        parents[sid] = draw(st.sampled_from([None, *ids[:i]]))
    kinds = {sid: draw(st.sampled_from(["state", "state", "parallel", "final"])) for sid in ids}
    for parent in parents.values():
        if parent is not None and kinds[parent] == "final":
            kinds[parent] = "state"

    def render(sid: str) -> str:
        kind = kinds[sid]
        inner = ""
        if kind != "final":
            for _ in range(draw(st.integers(0, 3))):
                event = draw(st.sampled_from([None, None, "e", "f", "e.x", "*", "error.*", "done.*"]))
                target = draw(st.sampled_from([None, *ids, " ".join(ids[:2])]))
                cond = draw(st.one_of(st.none(), js_expressions))
                content = "".join(draw(st.lists(executable(), max_size=2)))
                inner += (
                    f"<transition{attr('event', event)}{attr('target', target)}{attr('cond', cond)}>"
                    f"{content}</transition>"
                )
            if draw(st.integers(0, 5)) == 0:
                child = (
                    '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" datamodel="ecmascript">'
                    f'<state id="c0"><onentry>{draw(executable())}</onentry>'
                    '<transition event="e" target="cf"/></state><final id="cf"/></scxml>'
                )
                inner += (
                    f'<invoke type="scxml" id="c" autoforward="{draw(st.sampled_from(["true", "false"]))}">'
                    f'<param name="p"{attr("expr", draw(js_expressions))}/><content>{child}</content>'
                    f"<finalize>{draw(executable())}</finalize></invoke>"
                )
        for hook in ("onentry", "onexit"):
            if draw(st.booleans()):
                inner += f"<{hook}>{draw(executable())}</{hook}>"
        inner += "".join(render(c) for c in ids if parents[c] == sid)
        return f'<{kind} id="{sid}">{inner}</{kind}>'

    data = "".join(f'<data id="d{i}"{attr("expr", draw(st.one_of(st.none(), js_expressions)))}/>' for i in range(3))
    datamodel = draw(st.sampled_from(["ecmascript", "ecmascript", "ecmascript", "null"]))
    body = "".join(render(sid) for sid in ids if parents[sid] is None)
    return (
        '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0"'
        f' datamodel="{datamodel}"><datamodel>{data}</datamodel>{body}</scxml>'
    )


plans = st.fixed_dictionaries(
    {
        "limits": st.fixed_dictionaries(
            {
                "max_microstep_count": st.sampled_from([0, 1, 5, 50]),
                "max_state_entry_count": st.sampled_from([0, 1, 3, 50]),
                "max_pending_events": st.sampled_from([0, 1, 3, 20]),
                # Always on: with no timeout, an endless script may legitimately run for ever.
                "process_event_timeout": st.sampled_from([0.05, 0.2]),
                "max_session_age": st.sampled_from([0, 1, 30]),
            }
        ),
        "steps": st.lists(
            st.one_of(
                st.tuples(st.just("send"), st.sampled_from(EVENT_NAMES), hostile_values),
                st.tuples(st.just("advance"), st.sampled_from([0, 0.2, 1, 5, 60])),
            ),
            max_size=5,
        ),
    }
)


def assert_session_contract(result: dict) -> None:
    assert not result["violations"], "\n".join(result["violations"])


#: Attributes whose values a well-formed mutation replaces, so that the document still loads and runs.
VALUE_ATTRIBUTES = re.compile(rb'\b(cond|expr|event|target|location|array|delay|eventexpr|namelist)="[^"]*"')

attribute_mutation = st.tuples(
    st.floats(0, 1),
    st.one_of(
        js_expressions, st.sampled_from(["pass", "fail", "s0", "s0 s1", "*", "error.*", "done.*", "e", "0s", "1s"])
    ),
)


def mutate_attributes(data: bytes, mutations: list[tuple[float, str]]) -> bytes:
    """Replace attribute values with generated expressions, event names or targets."""
    for where, value in mutations:
        spots = list(VALUE_ATTRIBUTES.finditer(data))
        if not spots:
            break
        spot = spots[int(where * (len(spots) - 1))]
        data = (
            data[: spot.start()]
            + spot.group(1)
            + b"="
            + quoteattr(value).encode("utf-8", "surrogatepass")
            + data[spot.end() :]
        )
    return data


# ---------------------------------------------------------------- (a) load()


def assert_load_contract(result: dict) -> None:
    if result["outcome"] == "raised":
        pytest.fail(f"load() raised {result['exc']}, not DocumentError:\n{result['tb']}")
    if result["outcome"] == "DocumentError":
        assert result["line_ok"], result["message"]


@pytest.mark.slow
@fuzz_settings(1000)
@given(
    doc=st.sampled_from(W3C),
    mutations=st.lists(mutation, min_size=1, max_size=4),
    check=st.booleans(),
    as_file=st.booleans(),
)
def test_load_of_mutated_w3c_documents(
    worker: WorkerClient, doc: bytes, mutations: list, check: bool, as_file: bool
) -> None:
    data = mutate(doc, mutations)
    text: str | bytes = data if as_file else data.decode("utf-8", "surrogateescape")
    assert_load_contract(run(worker, {"kind": "load", "text": text, "as_file": as_file, "check": check}))


@pytest.mark.slow
@fuzz_settings(200)
@given(chart=charts(), check=st.booleans())
def test_load_of_generated_charts(worker: WorkerClient, chart: str, check: bool) -> None:
    assert_load_contract(run(worker, {"kind": "load", "text": chart, "check": check}))


# ---------------------------------------------------------------- (b) sessions


@pytest.mark.slow
@fuzz_settings(200)
@given(doc=st.sampled_from(W3C), mutations=st.lists(attribute_mutation, max_size=3), plan=plans)
def test_sessions_of_mutated_w3c_documents(worker: WorkerClient, doc: bytes, mutations: list, plan: dict) -> None:
    data = mutate_attributes(doc, mutations)
    result = run(worker, {"kind": "load", "text": data, "as_file": True, "check": False, "plan": plan})
    assert_load_contract(result)
    if "session" in result:
        assert_session_contract(result["session"])


@pytest.mark.slow
@fuzz_settings(300)
@given(chart=charts(), plan=plans)
def test_sessions_of_generated_charts(worker: WorkerClient, chart: str, plan: dict) -> None:
    result = run(worker, {"kind": "session", "text": chart, "plan": plan})
    if "raised" in result:
        pytest.fail(f"load() raised {result['raised']}:\n{result['tb']}")
    if result["loaded"]:
        assert_session_contract(result)


def test_sessions_expose_peaks_for_the_limit_contract(worker: WorkerClient) -> None:
    # The fuzz contract reads the peaks to tell whether a session ran past a limit.
    chart = (
        '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" initial="a">'
        '<state id="a"><transition target="a"/></state></scxml>'
    )
    plan = {"limits": {"max_microstep_count": 5, "process_event_timeout": 0.2}, "steps": []}
    result = run(worker, {"kind": "session", "text": chart, "plan": plan})
    assert result["peaks"], "Session has no peaks: the limit part of the fuzz contract cannot be checked"
    assert result["termination"] == "max-microstep-count"
    assert_session_contract(result)


# ---------------------------------------------------------------- (c) option files and the command line

SECTIONS = ["scxml", "cluster", "log", "persistence", "unknown", "", "scxml ", "[", "\u00e9"]
OPTIONS = [
    "max-microstep-count",
    "max-state-entry-count",
    "max-pending-events",
    "process-event-timeout",
    "max-session-age",
    "heartbeat-interval",
    "strategy",
    "replication",
    "x",
    "",
    "=",
]
VALUES = [
    "100",
    "0",
    "-1",
    "1.5",
    "inf",
    "nan",
    "1e400",
    str(2**64),
    "",
    "abc",
    "\u00e9",
    "100ms",
    "true",
    "{'class': 'SimpleStrategy', 'replication_factor': 3}",
    "x" * 500,
]

option_lines = st.one_of(
    st.sampled_from(SECTIONS).map(lambda s: f"[{s}]"),
    st.tuples(st.sampled_from(OPTIONS), st.sampled_from(["=", " = ", ":", ""]), st.sampled_from(VALUES)).map("".join),
    st.sampled_from(["# comment", ";c", "", "   ", "\t[scxml]", "=x", "[scxml", "a=b=c"]),
    st.text(max_size=30),
)
option_files = st.tuples(
    st.lists(option_lines, max_size=25),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\x00"]),
    st.binary(max_size=6),
).map(lambda t: t[2] + t[1].join(t[0]).encode("utf-8", "surrogatepass") + t[3])

RUN_DOCS = [
    '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" initial="a"><state id="a">'
    '<transition event="e" target="a"/></state></scxml>',
    '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" initial="a"><state id="a">'
    '<transition target="a"/></state></scxml>',
    '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" datamodel="ecmascript" initial="a"><state id="a">'
    '<transition event="e" cond="_event.data.x &gt; 1" target="f"/></state><final id="f"/></scxml>',
    "not xml at all",
]


def _digest(path: Path) -> tuple[str, str]:
    info = os.lstat(path)
    kind = stat.filemode(info.st_mode)[0]
    if stat.S_ISREG(info.st_mode):
        return kind, hashlib.sha256(path.read_bytes()).hexdigest()
    if stat.S_ISLNK(info.st_mode):
        return kind, os.readlink(path)
    return kind, ""


def _setup_file(folder: Path, name: str, kind: str, data: bytes) -> Path:
    path = folder / name
    if kind == "symlink":
        real = folder / f"real-{name}"
        real.write_bytes(data)
        path.symlink_to(real)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "missing":
        pass
    else:
        path.write_bytes(data)
    return path


def _snapshot(folder: Path) -> dict[str, tuple[str, str]]:
    return {p.name: _digest(p) for p in folder.iterdir()}


@pytest.mark.slow
@fuzz_settings(200)
@given(
    data=option_files,
    kind=st.sampled_from(["file", "file", "file", "symlink", "fifo", "directory", "missing"]),
    command=st.sampled_from(
        [
            "check",
            "check -q",
            "show",
            "migrate -o OUT",
            "migrate -o -",
            "migrate --in-place",
            "migrate -o LINK",
            "migrate -o FIFO",
        ]
    ),
)
def test_options_commands_on_generated_files(worker: WorkerClient, data: bytes, kind: str, command: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = _setup_file(folder, "ors.cfg", kind, data)
        (folder / "dest.cfg").write_bytes(b"previous\n")
        (folder / "link.cfg").symlink_to(folder / "dest.cfg")
        os.mkfifo(folder / "out.fifo")
        argv = [
            "options",
            *command.replace("OUT", str(folder / "new.cfg"))
            .replace("LINK", str(folder / "link.cfg"))
            .replace("FIFO", str(folder / "out.fifo"))
            .split(),
            str(path),
        ]
        before = _snapshot(folder)
        # A reader on each FIFO, so that writing through to one cannot block.
        readers = [
            os.open(folder / name, os.O_RDONLY | os.O_NONBLOCK) for name in ("out.fifo",) if (folder / name).exists()
        ]
        try:
            result = run(worker, {"kind": "cli", "argv": argv}, CLI_TIMEOUT)
        finally:
            for fd in readers:
                os.close(fd)
        after = _snapshot(folder)
    assert result["code"] is not None, f"orsguard {' '.join(argv)} raised {result['exc']}:\n{result['tb']}"
    assert result["code"] in (0, 1, 2), result
    assert "Traceback" not in result["stderr"]
    for name, (kind_before, digest_before) in before.items():
        kind_after, digest_after = after.get(name, ("gone", ""))
        assert kind_after == kind_before, f"orsguard {' '.join(argv)} turned {name} from {kind_before} to {kind_after}"
        may_change = (name in ("ors.cfg", "real-ors.cfg") and "--in-place" in command) or (
            name == "dest.cfg" and "LINK" in command
        )
        if not may_change:
            assert digest_after == digest_before, f"orsguard {' '.join(argv)} changed {name}"


@pytest.mark.slow
@fuzz_settings(150)
@given(
    doc=st.sampled_from(RUN_DOCS),
    opts=st.one_of(st.none(), option_files),
    limits=st.lists(
        st.tuples(st.sampled_from(OPTIONS[:5] + ["x", "max_microstep_count"]), st.sampled_from(VALUES)), max_size=3
    ),
    events=st.lists(
        st.tuples(
            st.sampled_from(["e", "", "=", "e.x"]),
            st.sampled_from(["", "=1", '={"x": 2}', "=NaN", "={", "=1" + "0" * 400, '="\\ud800"', "=DEEP"]),
        ),
        max_size=3,
    ),
    env=st.dictionaries(
        st.sampled_from(["ORSGUARD_SCXML_MAX_MICROSTEP_COUNT", "ORSGUARD_SCXML_PROCESS_EVENT_TIMEOUT"]),
        st.sampled_from(VALUES),
        max_size=1,
    ),
)
def test_run_command_with_generated_arguments(
    worker: WorkerClient, doc: str, opts: bytes | None, limits: list, events: list, env: dict
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "m.scxml").write_text(doc)
        argv = ["run", str(folder / "m.scxml"), "--virtual-time", "--max-time", "5"]
        if opts is not None:
            (folder / "ors.cfg").write_bytes(opts)
            argv += ["--options", str(folder / "ors.cfg")]
        for option, value in limits:
            argv += ["--limit", f"{option}={value}"]
        for name, data in events:
            # Built here: a 100,000-deep JSON text would make hypothesis's report of the example huge.
            argv += ["--event", name + data.replace("DEEP", "[" * 100_000)]
        before = _snapshot(folder)
        result = run(worker, {"kind": "cli", "argv": argv, "env": env}, CLI_TIMEOUT)
        after = _snapshot(folder)
    shown = " ".join(a if len(a) < 200 else a[:200] + "..." for a in argv)
    assert result["code"] is not None, f"orsguard {shown} raised {result['exc']}:\n{result['tb'][-3000:]}"
    assert result["code"] in (0, 1, 2, 3), result
    assert "Traceback" not in result["stderr"]
    assert after == before


# ---------------------------------------------------------------- (d) lint, diagram, replay, test, serve

#: JSON-ready hostile values (what a file on disk can hold): json.dumps writes NaN and
#: Infinity as the bare tokens many parsers accept, and integers of any size.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, 2**64, -(2**63), 2**53 + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["\ud800", "\x00", "", " ", "a b", "*", "error.execution", "done.state.s0", "../x", "x" * 5000]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=10,
)

#: A document for a command: a generated chart, or a W3C document mutated byte-wise.
cli_documents = st.one_of(
    charts().map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.tuples(st.sampled_from(W3C), st.lists(mutation, max_size=3)).map(lambda t: mutate(*t)),
)


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _mutated_json(structured: Any) -> Any:
    """A strategy of file contents: ``structured`` serialized, sometimes mutated byte-wise, or garbage."""
    return st.one_of(
        structured.map(json_bytes),
        st.tuples(structured.map(json_bytes), st.lists(mutation, min_size=1, max_size=3)).map(lambda t: mutate(*t)),
        st.sampled_from(
            [b"", b"\x00", b"@DEEP-LIST@", b"@DEEP-DICT@", b"\xff\xfe{}", b"\xef\xbb\xbf{}", b"null", b"[]", b"{}"]
        ),
    )


def deep(data: bytes) -> bytes:
    """Markers for JSON nested 100,000 deep, built here: in an example they would make its report huge."""
    return data.replace(b"@DEEP-LIST@", b"[" * 100_000).replace(b"@DEEP-DICT@", b'{"a": ' * 50_000)


def assert_cli_contract(
    result: dict, argv: list[str], codes: tuple[int, ...], before: dict, after: dict, may_change: tuple[str, ...] = ()
) -> None:
    """A documented exit status, no traceback, and every input file as it was (outputs aside)."""
    shown = " ".join(a if len(a) < 200 else a[:200] + "..." for a in argv)
    assert result["code"] is not None, f"orsguard {shown} raised {result['exc']}:\n{result['tb'][-3000:]}"
    assert result["code"] in codes, f"orsguard {shown}: exit status {result['code']}\n{result['stderr']}"
    assert "Traceback" not in result["stderr"], f"orsguard {shown}:\n{result['stderr']}"
    for name, state in before.items():
        if name not in may_change:
            assert after.get(name) == state, f"orsguard {shown} changed {name}"


@pytest.mark.slow
@fuzz_settings(200)
@given(
    docs=st.lists(cli_documents, min_size=1, max_size=2),
    flags=st.sets(st.sampled_from(["--json", "--strict"])),
    missing=st.booleans(),
)
def test_lint_command_on_generated_documents(
    worker: WorkerClient, docs: list[bytes], flags: set, missing: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = []
        for i, data in enumerate(docs):
            (folder / f"d{i}.scxml").write_bytes(data)
            paths.append(str(folder / f"d{i}.scxml"))
        if missing:
            paths.append(str(folder / "missing.scxml"))
        argv = ["lint", *sorted(flags), *paths]
        before = _snapshot(folder)
        result = run(worker, {"kind": "cli", "argv": argv}, CLI_TIMEOUT)
        after = _snapshot(folder)
    assert_cli_contract(result, argv, (0, 1, 2), before, after)


highlight_files = _mutated_json(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "termination": st.one_of(
                    st.none(),
                    st.fixed_dictionaries(
                        {
                            "trail": st.lists(
                                st.one_of(st.sampled_from(["s0 -> s1", "s1 -> s0", "s0 -> s0", ""]), json_scalars),
                                max_size=6,
                            )
                        }
                    ),
                )
            }
        ),
        st.fixed_dictionaries(
            {
                "findings": st.lists(
                    st.one_of(
                        json_values,
                        st.fixed_dictionaries(
                            {
                                "file": st.one_of(st.just("DOC"), json_scalars),
                                "check": st.sampled_from(["certain-loop", "possible-loop", "loop", "unreachable", ""]),
                                "transitions": st.one_of(
                                    json_values, st.lists(st.sampled_from(["s0 -> s1", "s1 -> s0"]), max_size=4)
                                ),
                            }
                        ),
                    ),
                    max_size=3,
                )
            }
        ),
    )
)


@pytest.mark.slow
@fuzz_settings(150)
@given(
    doc=cli_documents,
    fmt=st.sampled_from([None, "dot", "mermaid", "svg"]),
    output=st.sampled_from([None, "-", "out.dot", "out.mmd", "out.svg", "out.txt", "DIR", "missing/out.svg"]),
    highlight=st.one_of(st.none(), highlight_files, st.just("MISSING")),
)
def test_diagram_command_on_generated_documents(
    worker: WorkerClient, doc: bytes, fmt: str | None, output: str | None, highlight: bytes | str | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "d.scxml").write_bytes(doc)
        argv = ["diagram", str(folder / "d.scxml")]
        if fmt is not None:
            argv += ["--format", fmt]
        if output is not None:
            argv += ["-o", output if output == "-" else str(folder if output == "DIR" else folder / output)]
        if highlight == "MISSING":
            argv += ["--highlight", str(folder / "none.json")]
        elif highlight is not None:
            data = highlight.replace(b"DOC", str(folder / "d.scxml").encode())
            (folder / "h.json").write_bytes(deep(data))
            argv += ["--highlight", str(folder / "h.json")]
        before = _snapshot(folder)
        result = run(worker, {"kind": "cli", "argv": argv}, CLI_TIMEOUT)
        after = _snapshot(folder)
    assert_cli_contract(result, argv, (0, 1, 2), before, after, may_change=(output or "",))


REPLAY_DOCS = {
    "loop": RUN_DOCS[1],
    "calls": RUN_DOCS[2],
    "timer": '<scxml xmlns="http://www.w3.org/2005/07/scxml" version="1.0" datamodel="ecmascript" initial="a">'
    '<state id="a"><onentry><send event="t" delay="1s"/></onentry><transition event="t" target="a"/>'
    '<transition event="stop" target="f"/></state><final id="f"/></scxml>',
    "broken": RUN_DOCS[3],
}
traffic_lines = st.one_of(
    st.fixed_dictionaries(
        {
            "t": st.one_of(st.integers(0, 100), json_scalars),
            "session": st.sampled_from(["s1", "s2", "", "\x00"]),
            "document": st.sampled_from([*REPLAY_DOCS, "missing", "../loop", "loop.scxml", ""]),
            "start": st.sampled_from([True, True, False, 1, None]),
            "data": st.one_of(st.none(), json_values),
        }
    ),
    st.fixed_dictionaries(
        {
            "t": st.one_of(st.integers(0, 100), json_scalars),
            "session": st.sampled_from(["s1", "s2", "s3"]),
            "event": st.sampled_from(["e", "stop", "t", "error.x", "done.state.a", "a b", ""]),
            "data": st.one_of(st.none(), st.just({"x": 2}), json_values),
        }
    ),
    json_values,
)
traffic_files = st.tuples(st.lists(_mutated_json(traffic_lines), max_size=12), st.sampled_from([b"\n", b"\r\n"])).map(
    lambda t: t[1].join(t[0])
)


@pytest.mark.slow
@fuzz_settings(200)
@given(
    traffic=traffic_files,
    json_out=st.booleans(),
    report=st.sampled_from([None, "r.html", "DIR", "missing/r.html"]),
    limits=st.lists(st.tuples(st.sampled_from(OPTIONS[:5] + ["x"]), st.sampled_from(VALUES)), max_size=2),
    extra=st.lists(
        st.sampled_from(
            [
                ["--margin", "1e400"],
                ["--margin", "nan"],
                ["--margin", "3"],
                ["--drain", "inf"],
                ["--drain", "-1"],
                ["--drain", "0"],
                ["--options", "OPTS"],
                ["--documents", "NODIR"],
            ]
        ),
        max_size=2,
    ),
)
def test_replay_command_on_generated_traffic(
    worker: WorkerClient, traffic: bytes, json_out: bool, report: str | None, limits: list, extra: list
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "docs").mkdir()
        for name, text in REPLAY_DOCS.items():
            (folder / "docs" / f"{name}.scxml").write_text(text)
        (folder / "ors.cfg").write_text("[scxml]\nmax-microstep-count = 50\n")
        (folder / "traffic.jsonl").write_bytes(deep(traffic))
        argv = ["replay", str(folder / "traffic.jsonl"), "--documents", str(folder / "docs")]
        if json_out:
            argv.append("--json")
        if report is not None:
            argv += ["--report", str(folder if report == "DIR" else folder / report)]
        for option, value in limits:
            argv += ["--limit", f"{option}={value}"]
        for flag, value in extra:
            argv += [flag, value.replace("OPTS", str(folder / "ors.cfg")).replace("NODIR", str(folder / "none"))]
        before = {**_snapshot(folder), **{f"docs/{k}": v for k, v in _snapshot(folder / "docs").items()}}
        result = run(worker, {"kind": "cli", "argv": argv}, CLI_TIMEOUT)
        after = {**_snapshot(folder), **{f"docs/{k}": v for k, v in _snapshot(folder / "docs").items()}}
    assert_cli_contract(result, argv, (0, 1, 2), before, after, may_change=(report or "",))


scenario_steps = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "event": st.one_of(
                json_values,
                st.fixed_dictionaries(
                    {"name": st.sampled_from(["e", "t", "stop", "", "error.x", "a b"])}, optional={"data": json_values}
                ),
            ),
            "after": st.one_of(st.integers(-5, 3000), json_scalars),
            "nextConfiguration": st.one_of(st.lists(st.sampled_from(["a", "f", "s0", "x"]), max_size=3), json_values),
            "data": json_values,
            "outbox": json_values,
            "termination": st.sampled_from([None, "max-microstep-count", "x", 1]),
        },
    ),
    json_values,
)
scenarios = st.one_of(
    st.fixed_dictionaries(
        {"events": st.lists(scenario_steps, max_size=4)},
        optional={
            "initialConfiguration": st.one_of(st.lists(st.sampled_from(["a", "f", "x"]), max_size=2), json_values),
            "limits": st.one_of(
                st.dictionaries(
                    st.sampled_from(OPTIONS[:5] + ["x"]), st.one_of(st.sampled_from(VALUES), json_scalars), max_size=2
                ),
                json_values,
            ),
            "params": json_values,
            "strict": json_scalars,
            "expectErrors": json_values,
            "initialData": json_values,
            "initialOutbox": json_values,
            "unknownKey": json_values,
        },
    ),
    json_values,
)


@pytest.mark.slow
@fuzz_settings(200)
@given(
    doc=st.one_of(st.sampled_from([*REPLAY_DOCS.values()]).map(str.encode), cli_documents),
    scenario=_mutated_json(scenarios),
    junit=st.sampled_from([None, "out.xml", "DIR", "missing/out.xml"]),
    target=st.sampled_from(["dir", "file", "both"]),
)
def test_test_command_on_generated_scenarios(
    worker: WorkerClient, doc: bytes, scenario: bytes, junit: str | None, target: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "m.scxml").write_bytes(doc)
        (folder / "m.json").write_bytes(deep(scenario))
        paths = {
            "dir": [str(folder)],
            "file": [str(folder / "m.json")],
            "both": [str(folder / "m.json"), str(folder / "none.json")],
        }[target]
        argv = ["test", *paths]
        if junit is not None:
            argv += ["--junit-xml", str(folder if junit == "DIR" else folder / junit)]
        before = _snapshot(folder)
        result = run(worker, {"kind": "cli", "argv": argv}, CLI_TIMEOUT)
        after = _snapshot(folder)
    assert_cli_contract(result, argv, (0, 1, 2), before, after, may_change=(junit or "",))


#: Values the argument parser of ``serve`` rejects: exit 2 before anything runs.
SERVE_BAD = {
    "--metrics-port": ["-1", "65536", "x", "1e3", ""],
    "--session-expiry": ["-1", "nan", "inf", "x", str(2**64)],
    "--max-sessions": ["-1", "x", str(2**64), "1.5"],
    "--max-payload": ["-1", "x", str(2**64), ""],
    "--workers": ["-1", "x", "1e400", str(2**64)],
    "--log-format": ["xml", ""],
    "--bogus": ["1"],
}
#: Values the host itself rejects before it starts: also exit 2, with a message.
SERVE_HOST_BAD = {
    "--mqtt": ["", "http://x", "mqtt://", "mqtt://127.0.0.1:99999", "mqtt://127.0.0.1:abc", "\x00", "mqtt://[::1"],
    "--log-level": ["LOUD", "", "-1"],
}
SERVE_GOOD = {
    # The broker is a closed loopback port and the documents directory is never a directory of
    # documents, so that no combination of values can start a host that connects anywhere.
    "--mqtt": ["mqtt://127.0.0.1:1"],
    "--metrics-port": ["0"],
    "--session-expiry": ["60"],
    "--max-sessions": ["10"],
    "--max-payload": ["1000"],
    "--workers": ["1"],
    "--log-format": ["text", "json"],
    "--log-level": ["ERROR"],
    "--topic-prefix": ["t", "", "#", "+/x", "\x00"],
    "--client-id": ["c", "", "\x00"],
    "--metrics-address": ["127.0.0.1", "not an address"],
}


def _options_of(table: dict[str, list[str]]) -> Any:
    return st.sampled_from(sorted(table)).flatmap(lambda k: st.tuples(st.just(k), st.sampled_from(table[k])))


@pytest.mark.slow
@fuzz_settings(100)
@given(
    bad=st.lists(_options_of(SERVE_BAD), max_size=2),
    host_bad=st.lists(_options_of(SERVE_HOST_BAD), max_size=1),
    good=st.lists(_options_of(SERVE_GOOD), max_size=3),
    documents=st.sampled_from(["NODIR", "FILE", None]),
    options=st.one_of(st.none(), option_files),
)
def test_serve_command_with_invalid_arguments(
    worker: WorkerClient, bad: list, host_bad: list, good: list, documents: str | None, options: bytes | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "file").write_text("x")
        argv = ["serve"]
        for flag, value in [*good, *host_bad, *bad]:
            argv.append(f"{flag}={value}")
        if documents is not None:
            argv.append(f"--documents={folder / 'none' if documents == 'NODIR' else folder / 'file'}")
        if options is not None:
            (folder / "ors.cfg").write_bytes(options)
            argv.append(f"--options={folder / 'ors.cfg'}")
        before = _snapshot(folder)
        result = run(worker, {"kind": "cli", "argv": argv}, CLI_TIMEOUT)
        after = _snapshot(folder)
    assert_cli_contract(result, argv, (2,), before, after)
    assert result["stderr"].strip(), f"orsguard {argv}: exit {result['code']} without a message"


def test_serve_exits_2_on_values_the_host_rejects(worker: WorkerClient, tmp_path: Path) -> None:
    for argv in (
        ["serve", "--mqtt=http://x", f"--documents={tmp_path}"],
        ["serve", "--mqtt=mqtt://127.0.0.1:1", f"--documents={tmp_path / 'none'}"],
        ["serve", "--mqtt=mqtt://127.0.0.1:1", f"--documents={tmp_path / 'none'}", "--log-level=LOUD"],
    ):
        result = run(worker, {"kind": "cli", "argv": argv}, CLI_TIMEOUT)
        assert result["code"] == 2, f"orsguard {' '.join(argv)}: exit {result['code']}: {result['stderr']}"


def test_serve_reports_an_unclosed_ipv6_broker_address(worker: WorkerClient, tmp_path: Path) -> None:
    argv = ["serve", "--mqtt=mqtt://[::1", f"--documents={tmp_path / 'none'}", "--workers=1"]
    result = run(worker, {"kind": "cli", "argv": argv}, CLI_TIMEOUT)
    assert result["code"] == 2, result["tb"]
    assert "Traceback" not in result["stderr"] and "--mqtt" in result["stderr"]
