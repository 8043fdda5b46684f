"""The ``orsguard`` command: ``run``, ``lint``, ``diagram``, ``replay``, ``test``, ``serve`` and ``options``.

Exit status of ``orsguard run``: 0 when the session reached a final state or is
still running at the end, 3 when a limit stopped it, 1 for a document or
options error, 2 for bad arguments. ``lint``: 1 when it found errors (or
warnings, with ``--strict``). Every command exits 2 on bad arguments, and 1
with ``orsguard: MESSAGE`` on stderr for a document or file it cannot use (an
:class:`~orsguard.errors.OrsguardError`, whose message names the file).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from orsguard._core import Stats
from orsguard._version import __version__
from orsguard.cli_options import add_subcommand as add_options_subcommand
from orsguard.clock import RealClock, VirtualClock
from orsguard.document import load
from orsguard.errors import OrsguardError
from orsguard.limits import OPTION_NAMES, Limits
from orsguard.options.effective import limits_from_options
from orsguard.options.schema import INT_MAX
from orsguard.scenario import add_subcommand as add_test_subcommand
from orsguard.session import Session

EXIT_LIMIT = 3

_FIELD_BY_OPTION = {option: name for name, option in OPTION_NAMES.items()}
#: The largest count ORS accepts in an options file (a 32-bit integer); the core's counters hold no more.
_MAX_COUNT = INT_MAX


# ---------------------------------------------------------------- argument types


def _event_arg(text: str) -> tuple[str, float | None, Any]:
    """``NAME[@SECONDS][=JSON]`` -> (name, seconds or None, data)."""
    head, sep, data = text.partition("=")
    name, at, when = head.partition("@")
    if not name:
        raise argparse.ArgumentTypeError(f"event {text!r} has no name")
    seconds = None
    if at:
        try:
            seconds = float(when)
        except ValueError:
            raise argparse.ArgumentTypeError(f"event {name!r}: {when!r} after '@' is not a number of seconds") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise argparse.ArgumentTypeError(f"event {name!r}: the time must be a finite number >= 0, got {when!r}")
    if not sep:
        return name, seconds, None
    try:
        return name, seconds, json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise argparse.ArgumentTypeError(f"event {name!r}: data is not JSON ({exc})") from None


def limit_arg(text: str) -> tuple[str, float]:
    """``OPTION=VALUE`` -> (``Limits`` field, value); a usage error for anything ``Limits`` cannot hold."""
    option, sep, value = text.partition("=")
    option = option.strip()
    field = _FIELD_BY_OPTION.get(option) or (
        option.replace("-", "_") if option.replace("-", "_") in OPTION_NAMES else None
    )
    if not sep or field is None:
        raise argparse.ArgumentTypeError(
            f"--limit takes OPTION=VALUE with OPTION one of {', '.join(OPTION_NAMES.values())}; got {text!r}"
        )
    option = OPTION_NAMES[field]
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--limit {option}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"--limit {option}: {value!r} is not a finite number (0 = unlimited)")
    try:
        # Limits' own check: not negative, and a whole number for a count.
        checked: float = getattr(Limits().replace(**{field: int(number) if number.is_integer() else number}), field)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"--limit {exc}") from None
    if field in ("max_microstep_count", "max_state_entry_count", "max_pending_events") and number > _MAX_COUNT:
        raise argparse.ArgumentTypeError(
            f"--limit {option}: {value} is too large (at most {_MAX_COUNT}; 0 = unlimited)"
        )
    return field, checked


def resolve_limits(options: str | None, overrides: list[tuple[str, float]]) -> Limits:
    """Defaults, then the options file, then ``ORSGUARD_SCXML_*`` variables, then ``--limit``.

    Raises :class:`~orsguard.options.OptionsError` for a bad file or variable;
    ``overrides`` come from :func:`limit_arg`, which has checked them.
    """
    base = limits_from_options(options)
    changes = dict(overrides)
    return base.replace(**changes) if changes else base


def _add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit",
        metavar="OPTION=VALUE",
        type=limit_arg,
        action="append",
        default=[],
        help="set an ORS limit, e.g. max-microstep-count=100 (overrides --options); "
        "the two times in seconds; 0 = unlimited",
    )
    parser.add_argument("--options", metavar="FILE", help="take the limits from an ORS options file's [scxml]")


def _error(message: str) -> None:
    print(f"orsguard: {message}", file=sys.stderr)


# ---------------------------------------------------------------- run


def json_ready(value: Any) -> Any:
    """``value`` with infinite and NaN floats as strings (``"+Inf"`` as in Prometheus), so it is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("+Inf" if value > 0 else "-Inf")
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def _advance_to(session: Session, when: float) -> None:
    """Let the session's timers run until its clock reads ``when`` (or until the session ends)."""
    clock = session.clock
    # A virtual clock's run_until stops at its last timer: a mark at ``when`` takes time
    # exactly there, where ``advance(when - now())`` could land a rounding step short.
    mark = clock.call_at(when, _nothing)
    clock.run_until(when, stop=lambda: not session.running)
    mark.cancel()


def _nothing() -> None:
    """A timer that only marks a time."""


def outcome(session: Session) -> str:
    """How the session ended, or where it still is, in one line: ``final: ID``, ``terminated: ...``, ..."""
    if session.termination is not None:
        return f"terminated: {session.termination}"
    if session.final is not None:
        return f"final: {session.final}"
    if session.running:
        return f"running in: {' '.join(sorted(session.atomic_configuration))}"
    return f"ended: {session.end_reason}"


def format_peaks(peaks: dict[str, Any], limits: Limits) -> list[str]:
    """The peaks as aligned lines: option, observed high-water mark, configured limit."""
    configured = limits.by_option()
    out = []
    for option in OPTION_NAMES.values():
        value = peaks[option]
        shown = f"{value:.4g} s" if isinstance(value, float) else str(value)
        if option == "max-state-entry-count" and peaks.get("state"):
            shown += f" ({peaks['state']})"
        limit = configured[option]
        out.append(f"  {option:<22} {shown:<24} limit {limit:g}" + (" (off)" if not limit else ""))
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    from orsguard.chart import require_regular_file

    out = sys.stdout
    require_regular_file(args.document)
    doc = load(args.document)
    limits = resolve_limits(args.options, args.limit)
    clock = VirtualClock() if args.virtual_time else RealClock()
    say = out if not args.json else sys.stderr
    trace = args.trace
    try:
        session = Session(
            doc,
            limits=limits,
            clock=clock,
            stats=Stats(),
            on_transition=(lambda label: print(f"  transition {label}", file=say)) if trace else None,
            on_log=lambda label, value: print(f"  log {label or ''}: {value!r}", file=say),
        )
    except OverflowError as exc:  # a value from the options file or environment beyond the core's fields
        _error(f"a limit is out of range: {exc}")
        return 1
    if trace:
        print(f"start {args.document}", file=say)
    session.start()
    start = clock.now()
    # Stable sort: events without a time go first, at the start, in the order given.
    for name, when, data in sorted(args.event, key=lambda e: e[1] or 0.0):
        if not session.running:
            break
        if when is not None:
            _advance_to(session, start + when)
            if not session.running:
                break
        if trace:
            at = f" at {when:g}s" if when is not None else ""
            print(f"event {name}{at}" + (f" {json.dumps(data)}" if data is not None else ""), file=say)
        session.send(name, data)
    if session.running and args.max_time > 0:
        session.run(args.max_time)
    status = EXIT_LIMIT if session.termination is not None else 0
    peaks = session.peaks.as_dict()
    if args.json:
        result = {
            "document": args.document,
            "final": session.final,
            "running": session.running,
            "end_reason": session.end_reason,
            "configuration": sorted(session.atomic_configuration),
            "termination": session.termination.as_dict() if session.termination is not None else None,
            "peaks": peaks,
            "limits": limits.by_option(),
            "stats": session.stats.snapshot(),
        }
        json.dump(json_ready(result), out, indent=2, allow_nan=False)
        out.write("\n")
        return status
    print(outcome(session), file=out)
    print("peaks:", file=out)
    for line in format_peaks(peaks, limits):
        print(line, file=out)
    return status


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run one document and print its outcome and peaks",
        description="Run one document under the ORS limits and print how it ended and how close it came to each limit.",
    )
    run.add_argument("document", help="the SCXML file")
    run.add_argument(
        "--event",
        metavar="NAME[@SECONDS][=JSON]",
        type=_event_arg,
        action="append",
        default=[],
        help="send an external event (repeatable): at the start in the order given, or at SECONDS after the start",
    )
    _add_limit_arguments(run)
    run.add_argument(
        "--virtual-time", action="store_true", help="run timers and timed events on a virtual clock (no waiting)"
    )
    run.add_argument(
        "--max-time",
        type=_seconds_arg,
        default=60.0,
        metavar="SECONDS",
        help="after the events, let timers run for this long (default 60; virtual or real)",
    )
    run.add_argument("--trace", action="store_true", help="also print every event and transition")
    run.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (final, termination, peaks, stats); <log> output goes to stderr",
    )
    run.set_defaults(func=_cmd_run)


def _seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: need a finite number of seconds >= 0")
    return value


# ---------------------------------------------------------------- lint


def _cmd_lint(args: argparse.Namespace) -> int:
    from orsguard.lint import Finding, lint_file

    findings: list[Finding] = []
    for path in args.documents:
        try:
            findings += lint_file(path)
        except Exception as exc:  # a document that breaks the loader is reported, not raised
            findings.append(Finding(path, 1, "error", "document", f"cannot load: {type(exc).__name__}: {exc}"))
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    if args.json:
        json.dump(
            {"findings": [f.as_dict() for f in findings], "errors": errors, "warnings": warnings}, sys.stdout, indent=2
        )
        sys.stdout.write("\n")
    else:
        for f in findings:
            print(f)
        print(
            f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)} "
            f"in {len(args.documents)} document{'s' * (len(args.documents) != 1)}",
            file=sys.stderr,
        )
    return 1 if errors or (args.strict and warnings) else 0


def _add_lint(sub: Any) -> None:
    lint = sub.add_parser(
        "lint",
        help="find loops, unreachable states and dead transitions without running",
        description="Static checks: certain and possible infinite loops (eventless, or driven "
        "by events the session queues itself), unreachable states, and transitions "
        "an earlier one always pre-empts. Prints FILE:LINE: error|warning: message.",
    )
    lint.add_argument("documents", nargs="+", metavar="DOC", help="SCXML files")
    lint.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    lint.add_argument(
        "--json", action="store_true", help="print the findings as JSON (input for orsguard diagram --highlight)"
    )
    lint.set_defaults(func=_cmd_lint)


# ---------------------------------------------------------------- diagram


def _cmd_diagram(args: argparse.Namespace) -> int:
    from orsguard.chart import load_chart
    from orsguard.diagram import DiagramError, diagram, format_for, read_highlight

    try:
        fmt = format_for(args.output, args.format)
    except DiagramError as exc:  # a usage error, not a file orsguard cannot use
        _error(str(exc))
        return 2
    chart = load_chart(args.document)
    # A bad highlight file or a failing Graphviz is a DiagramError: main() reports it, exit 1.
    labels = read_highlight(args.highlight, args.document) if args.highlight else []
    data = diagram(chart, fmt, labels)
    if args.highlight and not labels:
        _error(f"{args.highlight}: no loop to highlight")
    if args.output is None or args.output == "-":
        if fmt == "png" and sys.stdout.isatty():
            _error("not writing PNG to a terminal: use -o FILE.png")
            return 2
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    try:
        with open(args.output, "wb") as f:
            f.write(data)
    except OSError as exc:
        _error(f"cannot write {args.output}: {exc.strerror}")
        return 1
    return 0


def _add_diagram(sub: Any) -> None:
    from orsguard.diagram import FORMATS

    diag = sub.add_parser(
        "diagram",
        help="draw a document's statechart (Graphviz or Mermaid)",
        description="Draw the statechart: compound and parallel states as clusters, eventless "
        "transitions dashed, a loop from `run --json` or `lint --json` in red.",
    )
    diag.add_argument("document", metavar="DOC", help="the SCXML file")
    diag.add_argument(
        "-o", "--output", metavar="FILE", help="write here (.svg, .png, .dot, .mmd); default: standard output"
    )
    diag.add_argument(
        "--format",
        choices=list(FORMATS),
        help="output format (default: from -o's extension, else mermaid); svg and png need Graphviz",
    )
    diag.add_argument(
        "--highlight",
        metavar="FILE.json",
        help="draw in red the loop of `orsguard run --json` or the loops of `orsguard lint --json`",
    )
    diag.set_defaults(func=_cmd_diagram)


# ---------------------------------------------------------------- replay


def _cmd_replay(args: argparse.Namespace) -> int:
    from orsguard.replay import format_table, replay, write_html

    limits = resolve_limits(args.options, args.limit)
    # A traffic file that cannot be read at all is a ReplayError: main() reports it, exit 1.
    result = replay(
        args.traffic,
        args.documents,
        limits,
        margin=args.margin,
        drain=args.drain,
        progress=sys.stderr,
        on_problem=lambda p: print(f"orsguard: {p}", file=sys.stderr),
    )
    report = result.report()
    if args.report:
        try:
            write_html(result, args.report)
        except OSError as exc:
            _error(f"cannot write {args.report}: {exc.strerror}")
            return 1
    if args.json:
        json.dump(json_ready(report), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_table(report))
    return 1 if result.problems else 0


def _margin_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 1 or value > 1000:
        raise argparse.ArgumentTypeError(f"the margin must be between 1 and 1000, got {text!r}")
    return value


def _add_replay(sub: Any) -> None:
    rep = sub.add_parser(
        "replay",
        help="replay recorded traffic and suggest limits",
        description="Replay JSON-lines traffic on a virtual clock under the limits and report, per "
        "document, each limit's peaks (max, p50, p99), the sessions it stopped and a "
        "suggested value.",
    )
    rep.add_argument(
        "traffic",
        metavar="TRAFFIC.jsonl",
        help='one JSON object a line, sorted by "t": {"t", "session", "document", "start": true, '
        '"data"} starts a session, {"t", "session", "event", "data"} delivers an event',
    )
    rep.add_argument("--documents", required=True, metavar="DIR", help="where NAME.scxml of each document lives")
    _add_limit_arguments(rep)
    rep.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    rep.add_argument("--report", metavar="FILE.html", help="also write a self-contained HTML report")
    rep.add_argument(
        "--margin",
        type=_margin_arg,
        default=2.0,
        help="suggested limit = observed max times this, rounded up (default 2)",
    )
    rep.add_argument(
        "--drain",
        type=_seconds_arg,
        default=60.0,
        metavar="SECONDS",
        help="after the last line, let timers run this many virtual seconds (default 60)",
    )
    rep.set_defaults(func=_cmd_replay)


# ---------------------------------------------------------------- the parser


#: Each adds one subcommand to the argparse subparsers object and sets ``func``.
SUBCOMMANDS: list[Callable[[Any], Any]] = [_add_run, _add_lint, _add_diagram, _add_replay, add_test_subcommand]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orsguard", description="Run W3C SCXML state machines under the session limits of Genesys ORS 8.1.3."
    )
    parser.add_argument("--version", action="version", version=f"orsguard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    try:
        from orsguard.host import add_subcommand as add_serve_subcommand
    except ImportError as exc:  # the operations extra (mqtt5, prometheus-client) is not installed
        missing = str(exc)
        serve = sub.add_parser("serve", help="run the MQTT session host (needs orsguard[ops])")
        serve.add_argument("rest", nargs=argparse.REMAINDER)
        serve.set_defaults(func=lambda args: _missing_ops(missing))
    else:
        add_serve_subcommand(sub)
    add_options_subcommand(sub)
    return parser


def _missing_ops(reason: str) -> int:
    print(f"orsguard serve needs the operations extra: pip install 'orsguard[ops]' ({reason})", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``orsguard`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except OrsguardError as exc:
        # A document or options file that cannot be used: the message names the file (and line).
        _error(str(exc))
        return 1
    except BrokenPipeError:
        # The reader went away (``orsguard run ... | head``): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
