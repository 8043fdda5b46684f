"""orsguard's own QuickJS binding against the quickjs-ng Python package it replaced.

Both embed the same engine release (quickjs-ng 0.17.0.2); the package is
installed only by the ``bench`` extra (``pip install -e '.[bench]'``).

    python benchmarks/bench_quickjs.py            # full run, about two minutes
    python benchmarks/bench_quickjs.py --quick    # smoke run

Per-call figures are the best of several interleaved rounds of CPU time
(``time.process_time``), so other load on the machine inflates them less.
Memory per session is the RSS growth of a fresh child process that holds N
live sessions (or bare contexts), divided by N. The script reports; it
asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable

NS = 'xmlns="http://www.w3.org/2005/07/scxml" version="1.0"'
# A small ECMAScript session: data, a condition, an assignment, In().
DOC = f"""<scxml {NS} initial="idle">
  <datamodel><data id="n" expr="0"/><data id="N" expr="10"/></datamodel>
  <state id="idle">
    <transition event="go" cond="n &lt; N &amp;&amp; In('idle')" target="idle">
      <assign location="n" expr="n + 1"/>
    </transition>
  </state>
</scxml>"""


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _best(fn: Callable[[], None], loops: int, rounds: int) -> float:
    """Best CPU seconds per call of ``fn`` over ``rounds`` rounds of ``loops`` calls."""
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        for _ in range(loops):
            fn()
        best = min(best, (time.process_time() - t) / loops)
    return best


# ------------------------------------------------------------------ engines


def new_context():
    from orsguard.datamodels import _quickjs as qjs

    ctx = qjs.Context(1, "var n = 3, N = 10;", lambda s: False, lambda x: [], lambda k: None)
    ctx.compile(0, qjs.KIND_COND, "(function () { return !!(n < N\n); })")
    return ctx


def old_context():
    import quickjs

    ctx = quickjs.Context()
    ctx.eval("var n = 3, N = 10;")
    return ctx


def calls(rounds: int, loops: int) -> dict[str, tuple[float, float]]:
    new, old = new_context(), old_context()
    old_fn = old.eval("(function () { return !!(n < N\n); })")
    out: dict[str, list[float]] = {"call": [], "eval": []}
    pairs = {
        "call": (lambda: new.cond(0), old_fn),
        "eval": (lambda: new.eval("n < N"), lambda: old.eval("n < N")),
    }
    for name, (n_fn, o_fn) in pairs.items():
        n_best = o_best = float("inf")
        for _ in range(rounds):  # interleaved
            n_best = min(n_best, _best(n_fn, loops, 1))
            o_best = min(o_best, _best(o_fn, loops, 1))
        out[name] = [n_best, o_best]
    return {k: (v[0], v[1]) for k, v in out.items()}


LOOP = "var s = 0; for (var i = 0; i < 30000000; i++) { s += i; } s"


def loop() -> tuple[float, float]:
    new, old = new_context(), old_context()
    t = time.process_time()
    new.eval(LOOP)
    t_new = time.process_time() - t
    t = time.process_time()
    old.eval(LOOP)
    return t_new, time.process_time() - t


# ------------------------------------------------------------------ memory, in child processes


def _hold(kind: str, count: int, queue: multiprocessing.Queue) -> None:
    import gc

    keep: list = []
    if kind == "new-session":
        from orsguard import Session, load

        doc = load(DOC)
        Session(doc).start()  # warm up: the thread's runtime, imports, compiled tables
        gc.collect()
        before = _rss()
        for _ in range(count):
            keep.append(Session(doc).start())
    elif kind == "new-context":
        from orsguard.datamodels import _quickjs as qjs
        from orsguard.datamodels.ecmascript import _PRELUDE, _xml_tree

        def make():
            return qjs.Context(4, _PRELUDE, lambda s: False, _xml_tree, lambda k: None)

        make()
        before = _rss()
        for _ in range(count):
            keep.append(make())
    else:  # old-context: what the old datamodel created per session
        import quickjs

        from orsguard.datamodels.ecmascript import _PRELUDE

        def make():
            ctx = quickjs.Context()
            ctx.add_callable("__og_in", lambda s: False)
            ctx.eval(_PRELUDE)
            return ctx

        make()
        before = _rss()
        for _ in range(count):
            keep.append(make())
    gc.collect()
    queue.put((_rss() - before) / count)


def per_session_bytes(kind: str, count: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_hold, args=(kind, count, queue))
    proc.start()
    value = queue.get(timeout=600)
    proc.join()
    return value


def create_start(loops: int, rounds: int) -> float:
    from orsguard import Session, load

    doc = load(DOC)
    keep: list = []

    def make() -> None:
        keep.append(Session(doc).start())

    best = float("inf")
    for _ in range(rounds):
        keep.clear()
        best = min(best, _best(make, loops, 1))
    return best


def context_create(loops: int, rounds: int) -> tuple[float, float]:
    """Seconds to create one context with the datamodel's prelude: new binding, old package."""
    import quickjs

    from orsguard.datamodels import _quickjs as qjs
    from orsguard.datamodels.ecmascript import _PRELUDE, _xml_tree

    def new() -> None:
        qjs.Context(4, _PRELUDE, bool, _xml_tree, bool)

    def old() -> None:
        ctx = quickjs.Context()
        ctx.add_callable("__og_in", bool)
        ctx.eval(_PRELUDE)

    n_best = o_best = float("inf")
    for _ in range(rounds):
        n_best = min(n_best, _best(new, loops, 1))
        o_best = min(o_best, _best(old, loops, 1))
    return n_best, o_best


def compile_cost(loops: int, rounds: int) -> tuple[float, float]:
    """Seconds to compile one expression into a session: bytecode loaded from the thread's cache, or parsed."""
    from orsguard.datamodels import _quickjs as qjs

    src = "(function () { return !!(n < N && [1, 2, 3].indexOf(n) >= 0\n); })"
    ctx = qjs.Context(1, "var n = 1, N = 2;", bool, bool, bool)
    best = {True: float("inf"), False: float("inf")}
    try:
        for _ in range(rounds):
            for flag in (True, False):
                qjs.use_bytecode(flag)
                best[flag] = min(best[flag], _best(lambda: ctx.compile(0, qjs.KIND_COND, src), loops, 1))
    finally:
        qjs.use_bytecode(True)
    return best[True], best[False]


def timeout_under_load(limit: float, burners: int) -> float:
    """Wall seconds for the deadline to stop ``while(true){}`` with ``burners`` CPU-burning processes."""
    from orsguard.datamodels import _quickjs as qjs

    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(burners)]
    try:
        time.sleep(0.5)
        ctx = new_context()
        ctx.compile(0, qjs.KIND_CALL, "(function () { while (true) {} })")
        rt = qjs.runtime()
        start = time.monotonic()
        rt.deadline = start + limit
        try:
            ctx.call(0)
        except Exception:
            pass
        finally:
            rt.deadline = 0.0
        return time.monotonic() - start
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer calls and sessions")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument(
        "--baseline",
        metavar="PYTHON",
        help="an interpreter with an orsguard that still uses the quickjs-ng package: "
        "whole-session figures are measured there too",
    )
    parser.add_argument("--sessions-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    quick = args.quick
    counts = (200,) if quick else (1000, 10000)
    if args.sessions_only:
        out = {str(n): per_session_bytes("new-session", n) for n in counts}
        out["create_start"] = create_start(loops=100 if quick else 1000, rounds=3 if quick else 5)
        print(json.dumps(out))
        return
    base: dict[str, float] = {}
    if args.baseline:
        cmd = [args.baseline, os.path.abspath(__file__), "--sessions-only"] + (["--quick"] if quick else [])
        base = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    rows: list[tuple[str, str, str]] = []
    figures: dict[str, object] = {}

    c = calls(rounds=3 if quick else 7, loops=20_000 if quick else 200_000)
    figures["calls"] = c
    rows.append(
        ("call of a compiled function (`n < N`)", f"{c['call'][0] * 1e9:.0f} ns", f"{c['call'][1] * 1e9:.0f} ns")
    )
    rows.append(('`eval("n < N")`', f"{c['eval'][0] * 1e6:.2f} µs", f"{c['eval'][1] * 1e6:.2f} µs"))
    if not quick:
        ln, lo = loop()
        figures["loop"] = (ln, lo)
        rows.append(("3e7-iteration loop (`s += i`)", f"{ln:.2f} s", f"{lo:.2f} s"))
    for n in counts:
        s = per_session_bytes("new-session", n)
        b = per_session_bytes("new-context", n)
        o = per_session_bytes("old-context", n)
        figures[f"memory_{n}"] = (s, b, o)
        rows.append(
            (
                f"memory per session, {n:,} live (whole session / context only)",
                f"{s / 1024:.0f} KiB / {b / 1024:.0f} KiB",
                (f"{base[str(n)] / 1024:.0f} KiB" if base else "-") + f" / {o / 1024:.0f} KiB",
            )
        )
    cn, co = context_create(loops=100 if quick else 1000, rounds=3 if quick else 5)
    figures["context_create"] = (cn, co)
    rows.append(("context create + datamodel prelude", f"{cn * 1e6:.0f} µs", f"{co * 1e6:.0f} µs"))
    bc, parse = compile_cost(loops=200 if quick else 2000, rounds=3 if quick else 5)
    figures["compile"] = (bc, parse)
    rows.append(
        (
            "compile an expression into a session: cached bytecode / parse",
            f"{bc * 1e6:.1f} µs / {parse * 1e6:.1f} µs",
            "-",
        )
    )
    cs = create_start(loops=100 if quick else 1000, rounds=3 if quick else 5)
    figures["create_start"] = cs
    rows.append(
        ("session create + start", f"{cs * 1e6:.0f} µs", f"{base['create_start'] * 1e6:.0f} µs" if base else "-")
    )
    stops = [timeout_under_load(0.5, 3) for _ in range(1 if quick else 3)]
    figures["timeout_stop"] = stops
    rows.append(
        ("0.5 s deadline stops `while(true){}`, 3 CPU burners (wall)", " / ".join(f"{s:.3f} s" for s in stops), "-")
    )

    print("| | orsguard `_quickjs` | `quickjs-ng` package |")
    print("| --- | --- | --- |")
    for name, new, old in rows:
        print(f"| {name} | {new} | {old} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
