"""The ``orsguard`` command: ``run``, ``serve``, ``options`` and ``test``.

Exit status of ``orsguard run``: 0 when the session reached a final state or is
still running at the end, 3 when a limit stopped it, 1 for a document or
options error, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from orsguard.clock import RealClock, VirtualClock
from orsguard.document import load
from orsguard.errors import DocumentError
from orsguard.limits import OPTION_NAMES, Limits
from orsguard.options import OptionsError, add_subcommands, limits_from_options
from orsguard.scenario import add_subcommand as add_test_subcommand
from orsguard.session import Session

EXIT_LIMIT = 3

_FIELD_BY_OPTION = {option: name for name, option in OPTION_NAMES.items()}


def _event_arg(text: str) -> tuple[str, Any]:
    name, sep, data = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"event {text!r} has no name")
    if not sep:
        return name, None
    try:
        return name, json.loads(data)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"event {name!r}: data is not JSON ({exc})") from None


def _limit_arg(text: str) -> tuple[str, float]:
    option, sep, value = text.partition("=")
    option = option.strip()
    field = _FIELD_BY_OPTION.get(option) or (option.replace("-", "_") if option.replace("-", "_") in OPTION_NAMES
                                             else None)
    if not sep or field is None:
        raise argparse.ArgumentTypeError(
            f"--limit takes OPTION=VALUE with OPTION one of {', '.join(OPTION_NAMES.values())}; got {text!r}")
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--limit {option}: {value!r} is not a number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"--limit {option}: must be >= 0 (0 = unlimited)")
    return field, number


def _limits(args: argparse.Namespace) -> Limits:
    # Defaults, then the options file, then ORSGUARD_SCXML_* variables, then --limit.
    base = limits_from_options(args.options)
    # Limits itself rejects a fraction for a count ("... must be a whole number").
    overrides = dict(args.limit)
    return base.replace(**overrides) if overrides else base


def _cmd_run(args: argparse.Namespace) -> int:
    out = sys.stdout
    try:
        doc = load(args.document)
    except DocumentError as exc:
        print(f"orsguard: {exc}", file=sys.stderr)
        return 1
    try:
        limits = _limits(args)
    except (ValueError, TypeError) as exc:
        print(f"orsguard: {exc}", file=sys.stderr)
        return 2
    except OptionsError as exc:  # already says file and line
        print(f"orsguard: {exc}", file=sys.stderr)
        return 1
    clock = VirtualClock() if args.virtual_time else RealClock()
    session = Session(
        doc, limits=limits, clock=clock,
        on_transition=lambda label: print(f"  transition {label}", file=out),
        on_log=lambda label, value: print(f"  log {label or ''}: {value!r}", file=out),
    )
    print(f"start {args.document}", file=out)
    session.start()
    for name, data in args.event:
        if not session.running:
            break
        print(f"event {name}" + (f" {json.dumps(data)}" if data is not None else ""), file=out)
        session.send(name, data)
    if session.running and args.max_time > 0:
        session.run(args.max_time)
    if session.termination is not None:
        print(f"terminated: {session.termination}", file=out)
        return EXIT_LIMIT
    if session.final is not None:
        print(f"final: {session.final}", file=out)
        return 0
    if session.running:
        print(f"running in: {' '.join(sorted(session.atomic_configuration))}", file=out)
        return 0
    print(f"ended: {session.end_reason}", file=out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orsguard", description="Run W3C SCXML state machines under the session limits of Genesys ORS 8.1.3.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,serve,options,test}")
    run = sub.add_parser("run", help="run one document and print its transitions and outcome")
    run.add_argument("document", help="the SCXML file")
    run.add_argument("--event", metavar="NAME[=JSON]", type=_event_arg, action="append", default=[],
                     help="send an external event after the start (repeatable, in order)")
    run.add_argument("--limit", metavar="OPTION=VALUE", type=_limit_arg, action="append", default=[],
                     help="set an ORS limit, e.g. max-microstep-count=100 (overrides --options); "
                          "the two times in seconds")
    run.add_argument("--options", metavar="FILE", help="take the limits from an ORS options file's [scxml]")
    run.add_argument("--virtual-time", action="store_true",
                     help="run delayed events on a virtual clock (no waiting)")
    run.add_argument("--max-time", type=float, default=60.0, metavar="SECONDS",
                     help="after the events, let timers run for this long (default 60; virtual or real)")
    run.set_defaults(func=_cmd_run)
    try:
        from orsguard import host
    except ImportError as exc:  # the operations extra (mqtt5, prometheus-client) is not installed
        missing = str(exc)
        serve = sub.add_parser("serve", help="run the MQTT session host (needs orsguard[ops])")
        serve.add_argument("rest", nargs=argparse.REMAINDER)
        serve.set_defaults(func=lambda args: _missing_ops(missing))
    else:
        host.add_subcommand(sub)
    add_subcommands(sub)
    add_test_subcommand(sub)
    return parser


def _missing_ops(reason: str) -> int:
    print(f"orsguard serve needs the operations extra: pip install 'orsguard[ops]' ({reason})", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``orsguard`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (``orsguard run ... | head``): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
