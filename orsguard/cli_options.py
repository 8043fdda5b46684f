"""``orsguard options check|migrate|show``: the command line of :mod:`orsguard.options`.

Problems go out as ``FILE:LINE: section/option: severity: message``; exit
status 1 means the file (or an output) could not be used, and nothing was
written. ``migrate`` never changes its input unless told to, and writes its
output whole or not at all.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import secrets
import shutil
import stat
import sys
from collections.abc import Callable
from typing import Any, TextIO

from orsguard.options.check import check
from orsguard.options.effective import effective, limits_from_options
from orsguard.options.migrate import Migration, migrate
from orsguard.options.problem import ERROR, NOTE, WARNING, OptionsError, Problem
from orsguard.options.reader import OptionFile, file_kind, read, read_with_problems
from orsguard.options.schema import SCHEMA, Option, known_ignoring_case

# ---------------------------------------------------------------- the subcommands


def add_subcommand(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``options`` with ``check``, ``migrate`` and ``show`` to an argparse subparsers object.

    Each leaf sets ``func``, a handler taking the parsed args and returning the
    exit status: dispatch with ``sys.exit(args.func(args))``.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "options",
        help="check, migrate and show ORS option files",
        description="Work with ORS option files exported from Configuration Manager.",
    )
    sub = parser.add_subparsers(dest="options_command", metavar="COMMAND", required=True)
    check_parser = _add_command(
        sub,
        "check",
        _cmd_check,
        "report problems, one per line",
        "Report each problem as FILE:LINE: section/option: severity: message. "
        "Exit 1 when there is an error; warnings and notes do not fail.",
    )
    check_parser.add_argument("-q", "--quiet", action="store_true", help="leave out notes about unknown options")
    migrate_parser = _add_command(
        sub,
        "migrate",
        _cmd_migrate,
        "migrate an 8.1.2 export to 8.1.3",
        "Delete section cluster and orchestration/mcr-pull-by-msn-only, keep every "
        "other line byte for byte. FILE is never changed unless --in-place is given, and then "
        "the original is kept as FILE.bak for rollback.",
    )
    target = migrate_parser.add_mutually_exclusive_group(required=True)
    target.add_argument("-o", "--output", metavar="OUT", help="write the migrated file to OUT ('-': stdout)")
    target.add_argument("--in-place", action="store_true", help="rewrite FILE, keeping the original as FILE.bak")
    _add_command(
        sub,
        "show",
        _cmd_show,
        "show effective values",
        "Show each option's effective value and where it comes from: the "
        "file's line, the default, or an ORSGUARD_SCXML_* environment variable.",
    )
    return parser


def _add_command(
    sub: Any, name: str, func: Callable[[argparse.Namespace], int], summary: str, description: str
) -> argparse.ArgumentParser:
    """One ``options`` subcommand taking a FILE, handled by ``func``."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=description)
    parser.add_argument("file", metavar="FILE")
    parser.set_defaults(func=func)
    return parser


def _tolerant_output() -> None:
    # A file name that is not valid UTF-8 reaches us with surrogate escapes;
    # print its original bytes back instead of failing with UnicodeEncodeError
    # (stdout is strict under most UTF-8 locales; stderr already escapes).
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and getattr(stream, "errors", None) == "strict":
            reconfigure(errors="surrogateescape")


def _err(message: str) -> None:
    print(f"orsguard: {message}", file=sys.stderr)


def _usable(path: str, *, unreadable: str = "", invalid: str = "") -> OptionFile | None:
    """The option file at ``path`` when it reads and checks without an error.

    Otherwise None, each error printed, then the hint ``unreadable`` (the file
    cannot be read or parsed) or ``invalid`` (a value is wrong), if given.
    """
    try:
        option_file = read(path)
    except OptionsError as exc:
        errors: list[Problem] | list[OptionsError] = exc.problems or [exc]
        hint = unreadable
    else:
        errors = [p for p in check(option_file) if p.severity == ERROR]
        hint = invalid
        if not errors:
            return option_file
    for error in errors:
        _err(str(error))
    if hint:
        _err(hint)
    return None


def _cmd_check(args: argparse.Namespace) -> int:
    _tolerant_output()
    try:
        option_file, problems = read_with_problems(args.file)
    except OptionsError as exc:
        _err(str(exc))
        return 1
    problems = sorted(problems + check(option_file), key=lambda p: p.line)
    counts = {severity: sum(p.severity == severity for p in problems) for severity in (ERROR, WARNING, NOTE)}
    for problem in problems:
        if not (args.quiet and problem.severity == NOTE):
            print(problem)
    summary = ", ".join(f"{n} {s}{'' if n == 1 else 's'}" for s, n in counts.items())
    print(f"{args.file}: {summary}", file=sys.stderr)
    return 1 if counts[ERROR] else 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    _tolerant_output()
    option_file = _usable(
        args.file,
        unreadable=f"nothing written; fix {args.file} first",
        invalid=f"nothing written; fix the errors first (orsguard options check {args.file})",
    )
    if option_file is None:
        return 1
    result = migrate(option_file)
    plan = _plan(args)
    if plan is None:
        return 1
    how, target = plan
    report = sys.stderr if how == "stdout" else sys.stdout
    if how == "in-place" and not result.changed:
        print(f"{args.file}: nothing to migrate; left unchanged", file=report)
        return 0
    if how == "in-place" and os.path.lexists(target + ".bak"):
        _err(f"{target}.bak exists (it may be your rollback copy); move it away first. Nothing written.")
        return 1
    if not _write(how, target, option_file, result.data):
        return 1
    _print_migration(args.file, result, report)
    if how == "in-place":
        print(f"wrote {target}; original kept as {target}.bak", file=report)
    elif how != "stdout":
        print(f"wrote {target}", file=report)
    return 0


def _plan(args: argparse.Namespace) -> tuple[str, str] | None:
    """How and where migrate writes: see :func:`_plan_output`, plus ``in-place``; None when refused."""
    if args.in_place:
        # A symbolic link is kept: the file it points to is migrated, and its
        # backup goes beside that file.
        return "in-place", os.path.realpath(args.file) if os.path.islink(args.file) else args.file
    try:
        how, target = _plan_output(args.output)
    except (_Refused, OSError) as exc:
        _not_written(exc, args.output, args.file)
        return None
    if how == "replace" and os.path.exists(target) and os.path.samefile(target, args.file):
        _err(f"{args.output} is the input file; use --in-place to rewrite it (keeps {args.file}.bak). Nothing written.")
        return None
    return how, target


def _write(how: str, target: str, option_file: OptionFile, data: bytes) -> bool:
    """Write the migrated ``data`` as planned; False (the reason printed) when nothing was written."""
    writing = target
    try:
        if how == "in-place":
            writing = target + ".bak"
            _write_atomic(writing, b"".join(option_file.lines), mode_from=target)
            writing = target
            _write_atomic(writing, data, mode_from=target)
        elif how == "through":
            _write_through(target, data)
        elif how == "replace":
            _write_atomic(target, data, mode_from=target if os.path.isfile(target) else None)
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
    except (_Refused, OSError) as exc:
        # Replacing is atomic, so a failure leaves FILE (and any OUT) as it was.
        _not_written(exc, writing, option_file.path)
        return False
    return True


def _not_written(exc: _Refused | OSError, output: str, source: str) -> None:
    if isinstance(exc, OSError):
        _err(f"cannot write {output}: {exc.strerror or exc}. {source} is unchanged.")
    else:
        _err(f"{exc}. Nothing written.")


def _print_migration(path: str, result: Migration, report: TextIO) -> None:
    for line, what in result.removed:
        print(f"{path}:{line}: removed {what}", file=report)
    if not result.removed:
        print(f"{path}: nothing to remove; already an 8.1.3 file", file=report)
    if result.defaults:
        print("added in 8.1.3 and not set in the file:", file=report)
    for option in result.defaults:
        if option.default is None:
            value = "unset (no default)"
        else:
            value = f"= {option.default}{_unit_suffix(option)} (default)"
        print(f"  {option.key} {value}", file=report)
    if result.remaining:
        print("warnings migration leaves for you to fix (lines of the original file):", file=report)
    for problem in result.remaining:
        print(f"  {problem}", file=report)


def _unit_suffix(option: Option) -> str:
    return f" {option.unit}" if option.unit else ""


def _cmd_show(args: argparse.Namespace) -> int:
    _tolerant_output()
    option_file = _usable(args.file)
    if option_file is None:
        return 1
    try:
        # Only the environment can still be wrong here: the file's values passed check().
        limits_from_options(option_file)
    except OptionsError as exc:
        _err(str(exc))
        return 1
    rows = [("OPTION", "VALUE", "UNIT", "FROM")]
    for s in effective(option_file):
        folded = None if s.known else known_ignoring_case(s.section, s.option)
        if folded is not None:
            origin = f"{s.origin} (not used: names are case-sensitive; see {folded.key})"
        else:
            origin = s.origin if s.known else f"{s.origin} (not in schema)"
        if f"{s.section}/{s.option}" in SCHEMA and SCHEMA[f"{s.section}/{s.option}"].removed:
            origin += " (removed in 8.1.3)"
        rows.append((f"{s.section}/{s.option}", "-" if s.value is None else s.value, s.unit, origin))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[3])
    return 0


# ---------------------------------------------------------------- writing the output


class _Refused(Exception):
    """An output that migrate will not write to; the text says why and what to do."""


def _write_atomic(path: str, data: bytes, *, mode_from: str | None = None) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    for _ in range(100):
        temp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
        try:
            # 0o666 less the umask, as for any new file (mkstemp would give 0o600).
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(errno.EEXIST, "no free temporary file name", directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if mode_from is not None:
            shutil.copymode(mode_from, temp)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def _write_through(path: str, data: bytes) -> None:
    """Write ``data`` into an existing FIFO or character device, never replacing it."""
    try:
        # O_NONBLOCK: a FIFO nobody reads fails at once (ENXIO) instead of hanging.
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise _Refused(f"{path} is a FIFO that nobody reads; start its reader first") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
            # Swapped for another kind of file since it was checked: writing
            # without truncating would leave a mix of old and new text.
            raise _Refused(f"{path} changed while it was opened; try again")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _is_stdout(info: os.stat_result) -> bool:
    try:
        return os.path.samestat(info, os.fstat(sys.stdout.fileno()))
    except (AttributeError, OSError, ValueError):
        return False


def _plan_output(out: str) -> tuple[str, str]:
    """How migrate writes OUT: ``("stdout" | "through" | "replace", path)``.

    Standard output (``-``, ``/dev/stdout`` or any name of the same file) is
    written as a stream; an existing FIFO or character device is written
    through, never replaced; a regular file, or a name that does not exist yet,
    is replaced atomically. A symbolic link is kept: the file it points to is
    the one replaced. Other kinds of files are refused.
    """
    if out == "-":
        return "stdout", out
    try:
        info: os.stat_result | None = os.stat(out)
    except FileNotFoundError:
        info = None
    if info is not None:
        if _is_stdout(info):
            return "stdout", out
        if stat.S_ISFIFO(info.st_mode) or stat.S_ISCHR(info.st_mode):
            return "through", out
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), out)
        if not stat.S_ISREG(info.st_mode):
            raise _Refused(
                f"{out} is {file_kind(info.st_mode)}; migrate writes to regular files, FIFOs and character devices"
            )
    return "replace", os.path.realpath(out) if os.path.islink(out) else out
