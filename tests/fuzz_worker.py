"""Child process of the fuzz tests: runs one job at a time and reports what happened.

Started by ``tests/test_fuzz.py`` (``python tests/fuzz_worker.py``). Each job is
one line of base64 pickle on stdin (a dict with ``kind`` = ``load``, ``session``
or ``cli``); each answer is one such line on the original stdout. The worker
checks the session contract itself and answers with a list of violations, so
the test process only judges. When a job crashes or hangs the interpreter, the
test process sees the worker die or go silent and restarts it.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import pickle
import resource
import shutil
import sys
import tempfile
import time
import traceback
from typing import Any

#: Slack, in seconds, on top of process-event-timeout for one macrostep: the
#: contract says 50 ms; the rest absorbs a busy machine. The benchmark measures the real figure.
TIMEOUT_SLACK = 0.5
#: One API call (start, send, advance) may run several macrosteps (invoked
#: sessions, due timers); beyond this it is reported even if it ends.
CALL_BOUND = 10.0


def decode(text: str) -> Any:
    return pickle.loads(base64.b64decode(text))


def encode(obj: Any) -> str:
    return base64.b64encode(pickle.dumps(obj)).decode("ascii")


def expand(value: Any) -> Any:
    """Markers the test process cannot pickle (too deep, cyclic) are built here."""
    if isinstance(value, tuple) and value and value[0] == "__deep__":
        _, kind, n = value
        x: Any = [] if kind == "list" else {}
        for _ in range(n):
            x = [x] if kind == "list" else {"k": x}
        return x
    if isinstance(value, tuple) and value and value[0] == "__cyclic__":
        x = []
        x.append(x)
        return x
    if isinstance(value, list):
        return [expand(v) for v in value]
    if isinstance(value, dict):
        return {k: expand(v) for k, v in value.items()}
    return value


class Worker:
    def __init__(self, resources: str | None) -> None:
        self.dir = tempfile.mkdtemp(prefix="orsguard-fuzz-")
        if resources and os.path.isdir(resources):
            # The documents' relative src (.txt resources, sub-documents) resolve here.
            for name in os.listdir(resources):
                if not name.endswith(".scxml") or "sub" in name:
                    shutil.copy(os.path.join(resources, name), self.dir)

    def load(self, job: dict) -> dict:
        import orsguard

        text = job["text"]
        try:
            if job.get("as_file"):
                path = os.path.join(self.dir, "fuzzed.scxml")
                with open(path, "wb") as f:
                    f.write(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
                doc = orsguard.load(path, check_expressions=job["check"])
            else:
                doc = orsguard.load(text, check_expressions=job["check"])
        except orsguard.DocumentError as exc:
            line_ok = exc.line is None or (isinstance(exc.line, int) and exc.line >= 1)
            return {"outcome": "DocumentError", "message": str(exc), "line_ok": line_ok}
        except Exception as exc:
            return {"outcome": "raised", "exc": type(exc).__name__, "tb": traceback.format_exc()}
        out: dict[str, Any] = {"outcome": "document"}
        if job.get("plan") is not None:
            out["session"] = self.run_session(doc, job["plan"])
        return out

    def session(self, job: dict) -> dict:
        import orsguard

        try:
            doc = orsguard.load(job["text"], check_expressions=job.get("check", False))
        except orsguard.DocumentError as exc:
            return {"loaded": False, "message": str(exc)}
        except Exception as exc:
            return {"loaded": False, "raised": type(exc).__name__, "tb": traceback.format_exc()}
        return {"loaded": True, **self.run_session(doc, job["plan"])}

    def run_session(self, doc: Any, plan: dict) -> dict:
        import orsguard

        violations: list[str] = []
        limits = orsguard.Limits(**plan["limits"])
        clock = orsguard.VirtualClock()

        def call(what: str, fn: Any, allowed: tuple[type[BaseException], ...]) -> None:
            start = time.monotonic()
            try:
                fn()
            except allowed:
                pass
            except Exception as exc:
                violations.append(f"{what} raised {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            elapsed = time.monotonic() - start
            if elapsed > CALL_BOUND:
                violations.append(f"{what} took {elapsed:.1f} s")

        session = None

        def create() -> None:
            nonlocal session
            session = orsguard.Session(doc, limits=limits, clock=clock, on_log=lambda label, value: None)

        call("Session()", create, ())
        if session is None:
            return {"violations": violations}
        call("start()", session.start, (orsguard.DocumentError,))
        for step in plan["steps"]:
            if not session.started:
                break
            if step[0] == "send":
                name, value = step[1], expand(step[2])
                call(
                    f"send({name!r}, ...)",
                    lambda name=name, value=value: session.send(name, value),
                    (ValueError, TypeError),
                )
            elif step[0] == "advance":
                call(f"advance({step[1]})", lambda s=step[1]: session.advance(s), ())
            self.check_limits(session, limits, violations)
        self.check_limits(session, limits, violations)
        t = session.termination
        out = {
            "violations": violations,
            "running": session.running,
            "final": session.final,
            "termination": None if t is None else t.option,
            "peaks": hasattr(session, "peaks"),
        }
        with contextlib.suppress(Exception):
            session.cancel()
        return out

    @staticmethod
    def check_limits(session: Any, limits: Any, violations: list[str]) -> None:
        import orsguard

        t = session.termination
        if t is not None and t.option not in orsguard.OPTION_NAMES.values():
            violations.append(f"terminated by an unknown option {t.option!r}")
        if t is not None and session.running:
            violations.append("terminated but still running")
        peaks = getattr(session, "peaks", None)
        if peaks is None:
            return  # test_fuzz checks separately that the core exposes peaks
        for option, observed, limit in (
            ("max-microstep-count", peaks.microsteps, limits.max_microstep_count),
            ("max-state-entry-count", peaks.state_entries, limits.max_state_entry_count),
            ("max-pending-events", peaks.pending, limits.max_pending_events),
        ):
            if limit and observed > limit:
                if observed > limit + 1:
                    violations.append(f"{option}: observed {observed} with limit {limit}")
                elif t is None or t.option != option:
                    violations.append(
                        f"{option}: observed {observed} > {limit} but the session was not stopped "
                        f"by it (termination: {t and t.option})"
                    )
        timeout = limits.process_event_timeout
        if timeout and peaks.macrostep_seconds > timeout + TIMEOUT_SLACK:
            violations.append(
                f"process-event-timeout: a macrostep took {peaks.macrostep_seconds:.3f} s with limit {timeout}"
            )
        age = limits.max_session_age
        if age and session.running and peaks.age > age:
            violations.append(f"max-session-age: still running at age {peaks.age} with limit {age}")

    def cli(self, job: dict) -> dict:
        from orsguard.cli import main

        # Byte-backed, as real standard streams are: commands may write bytes to .buffer.
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
        err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
        saved = dict(os.environ)
        os.environ.update(job.get("env") or {})
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(job["argv"])
        except SystemExit as exc:
            # As the interpreter does: a message is printed to stderr, and the status is then 1.
            if exc.code is not None and not isinstance(exc.code, int):
                print(exc.code, file=err)
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        except BaseException as exc:
            return {"code": None, "exc": type(exc).__name__, "tb": traceback.format_exc(), "stderr": _text(err)[-2000:]}
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return {"code": code, "stderr": _text(err)[-2000:], "stdout": _text(out)[-2000:]}


def _text(stream: io.TextIOWrapper) -> str:
    stream.flush()
    return stream.buffer.getvalue().decode("utf-8", "replace")


def main() -> None:
    if len(sys.argv) > 2:
        # An address-space cap: a job that allocates without bound fails here, not on the machine.
        resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
    # The protocol keeps the original stdout; whatever the code under test prints goes to stderr.
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    worker = Worker(sys.argv[1] if len(sys.argv) > 1 else None)
    try:
        for line in sys.stdin:
            job = decode(line)
            result = getattr(worker, job["kind"])(job)
            proto.write(encode(result) + "\n")
            proto.flush()
    finally:
        shutil.rmtree(worker.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
