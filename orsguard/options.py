"""ORS option files: read, check, migrate (8.1.2 to 8.1.3), show, and limits from them.

An ORS Application's options are exported from Configuration Manager as an
INI-style text file: ``[section]`` headers, ``option=value`` lines, ``#`` or
``;`` comment lines. This module reads such a file keeping every line's number,
checks it against :data:`SCHEMA` (the options the ORS 8.1.3 migration names),
migrates an 8.1.2 export by deleting the options 8.1.3 no longer uses, and
builds :class:`~orsguard.limits.Limits` from its ``[scxml]`` section, also on
SIGHUP for a long-running host.

Units in the file: ``scxml/process-event-timeout`` is in milliseconds and
``scxml/max-session-age`` in seconds; :class:`Limits` holds both in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import fcntl
import logging
import os
import re
import secrets
import shutil
import signal
import stat
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orsguard.limits import OPTION_NAMES, Limits

__all__ = [
    "SCHEMA",
    "Entry",
    "LimitsSource",
    "Migration",
    "Option",
    "OptionFile",
    "OptionsError",
    "Problem",
    "Setting",
    "add_subcommands",
    "check",
    "effective",
    "install_sighup",
    "limits_from_options",
    "main",
    "migrate",
    "read",
]

log = logging.getLogger(__name__)

ERROR = "error"
WARNING = "warning"
NOTE = "note"

#: Largest value an integer option accepts: Configuration Server stores option
#: values as text, and ORS reads numeric ones into 32-bit signed integers.
INT_MAX = 2**31 - 1

#: Largest option file read, in bytes. A real export with tens of thousands of
#: options is a few megabytes; anything bigger (``/dev/zero``, a log file given
#: by mistake) is refused before it is read into memory.
MAX_FILE_BYTES = 16 * 2**20

#: Environment variables that override ``[scxml]`` values, e.g.
#: ``ORSGUARD_SCXML_MAX_MICROSTEP_COUNT=500``; same units as the file.
ENV_PREFIX = "ORSGUARD_SCXML_"


class OptionsError(Exception):
    """An option file (or an override) that cannot be used, with its location.

    ``str()`` gives ``SOURCE:LINE: section/option: message``, the parts that are
    unknown left out. ``problems`` lists every syntax error found when one read
    found several; the exception itself describes the first.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        line: int | None,
        message: str,
        *,
        section: str | None = None,
        option: str | None = None,
        problems: Sequence[Problem] = (),
    ) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.message = message
        self.section = section
        self.option = option
        self.problems = list(problems)
        super().__init__(_locate(self.path, line, section, option, message))


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of :func:`check`; ``severity`` is ``error``, ``warning`` or ``note``."""

    file: str
    line: int
    section: str | None
    option: str | None
    severity: str
    message: str

    def __str__(self) -> str:
        return _locate(self.file, self.line, self.section, self.option, f"{self.severity}: {self.message}")


def _locate(path: str, line: int | None, section: str | None, option: str | None, message: str) -> str:
    where = path if line is None else f"{path}:{line}"
    if section is not None and option is not None:
        return f"{where}: {section}/{option}: {message}"
    if section is not None:
        return f"{where}: [{section}]: {message}"
    return f"{where}: {message}"


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True, slots=True)
class Option:
    """What orsguard knows of one ORS option.

    ``default`` is the value as it would be written in the file (None: no
    default, the option is simply unset). ``published`` names the facts that
    Genesys publishes (``default``, ``valid``, ``effect``); every other fact is
    orsguard's choice and ``why`` says why it was chosen. For a millisecond
    option, ``implausible_below`` is the value below which (0 excepted)
    :func:`check` warns that seconds were probably meant.
    """

    section: str
    name: str
    kind: str
    change: str
    summary: str
    default: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""
    zero: str = ""
    effect: str = ""
    published: frozenset[str] = frozenset()
    why: str = ""
    limit: str | None = None
    implausible_below: int | None = None

    @property
    def key(self) -> str:
        """``section/name``, the spelling used in messages and in docs."""
        return f"{self.section}/{self.name}"

    @property
    def removed(self) -> bool:
        """True for the options ORS 8.1.3 no longer uses."""
        return self.change == "removed"

    def valid_text(self) -> str:
        """The valid values in words, for messages and the docs table."""
        if self.kind == "integer":
            text = f"{self.minimum} to {self.maximum}"
            return f"{text} (0 = {self.zero})" if self.zero else text
        if self.kind == "boolean":
            return "true or false"
        if self.kind == "choice":
            return " or ".join(self.choices)
        return _KIND_TEXT.get(self.kind, "")


_KIND_TEXT = {
    "url": "an absolute http or https URL",
    "keyspace": "a letter, then up to 47 letters, digits or underscores",
    "version": "numbers separated by dots, e.g. 8.1.3",
    "replication": "a factor (SimpleStrategy) or datacenter:factor pairs (NetworkTopologyStrategy)",
    "removed": "(removed in 8.1.3)",
}

_LIMIT_DEFAULTS = Limits()

_LIMIT_WHY = (
    "Genesys publishes no value that orsguard could confirm; the default is "
    "orsguard's Limits default, high enough for real strategies and low enough "
    "to stop a runaway session; 0 switches the limit off as everywhere in orsguard."
)

_REMOVED_WHY = "No longer needed with the 8.1.3 cluster design; 8.1.3 ignores it and migrate deletes it."


def _limit_option(
    name: str, summary: str, unit: str, scale: int = 1, implausible_below: int | None = None
) -> Option:
    limit = {v: k for k, v in OPTION_NAMES.items()}[name]
    default = getattr(_LIMIT_DEFAULTS, limit)
    return Option(
        "scxml",
        name,
        "integer",
        "added",
        summary,
        default=str(round(default * scale)),
        minimum=0,
        maximum=INT_MAX,
        unit=unit,
        zero="no limit",
        effect="immediately",
        why=_LIMIT_WHY,
        limit=limit,
        implausible_below=implausible_below,
    )


#: Every option the ORS 8.1.3 migration chapter names, keyed by ``section/name``.
SCHEMA: dict[str, Option] = {
    o.key: o
    for o in (
        _limit_option(
            "max-microstep-count",
            "Microsteps a session may take while processing one event.",
            "microsteps",
        ),
        _limit_option(
            "max-state-entry-count",
            "Times one state may be entered during a session's life.",
            "entries",
        ),
        _limit_option(
            "max-pending-events",
            "Events queued to a session: internal, external, delayed and undelivered.",
            "events",
        ),
        _limit_option(
            "process-event-timeout",
            "Time allowed for processing the event queue.",
            "ms",
            scale=1000,
            implausible_below=100,
        ),
        _limit_option(
            "max-session-age",
            "Age at which a session is ended, so that none lives forever.",
            "s",
        ),
        Option(
            "orchestration",
            "external-url",
            "url",
            "added",
            "URL (the load balancer's) put in the Location of a 307 redirect "
            "for an HTTP request that reached a node not running the session.",
            effect="for the next interaction",
            published=frozenset({"default", "valid", "effect"}),
        ),
        Option(
            "orchestration",
            "mcr-pull-by-this-node",
            "boolean",
            "added",
            "Whether this node pulls multimedia (eServices) interactions.",
            default="false",
            effect="at startup",
            why="False is how a node behaves without the option; the migration "
            "procedure asks to set true only for multimedia. Taking effect at startup "
            "is the cautious reading: it changes which interactions the node owns.",
        ),
        Option(
            "orchestration",
            "scxml-log-filter-level",
            "integer",
            "added",
            "Level that filters the log events of SCXML `<log>` output.",
            default="0",
            minimum=0,
            maximum=INT_MAX,
            zero="no filtering",
            effect="immediately",
            why="Zero keeps every `<log>` event, as before the option existed; no upper "
            "bound is enforced because none is published.",
        ),
        Option(
            "orchestration",
            "send-retries",
            "integer",
            "added",
            "Times an event is sent again after a failed `<send>`.",
            default="3",
            minimum=0,
            maximum=INT_MAX,
            unit="retries",
            zero="no retry",
            effect="immediately",
            why="A few retries ride out a short outage of the target or the broker, "
            "while an event that cannot be delivered is still reported within seconds.",
        ),
        Option(
            "persistence",
            "cassandra-connect-attempt-timeout",
            "integer",
            "added",
            "Time allowed for one attempt to connect to Cassandra.",
            default="5000",
            minimum=1,
            maximum=INT_MAX,
            unit="ms",
            implausible_below=100,
            effect="at the next connection attempt",
            why="Milliseconds like ORS's other connection timeouts (call-watching-timeout "
            "defaults to 5000 ms); a node that takes longer to answer is treated as down.",
        ),
        Option(
            "persistence",
            "cassandra-keyspace-name",
            "keyspace",
            "added",
            "Cassandra keyspace that holds this cluster's sessions.",
            default="Orchestration",
            effect="at startup",
            why="The keyspace name ORS used before it was configurable; the syntax "
            "is Cassandra's rule for keyspace names.",
        ),
        Option(
            "persistence",
            "cassandra-max-latency",
            "integer",
            "added",
            "Cassandra latency above which a request is treated as failed.",
            default="0",
            minimum=0,
            maximum=INT_MAX,
            unit="ms",
            implausible_below=10,
            zero="not watched",
            effect="immediately",
            why="Zero leaves latency unwatched, as before the option existed.",
        ),
        Option(
            "persistence",
            "cassandra-schema-version",
            "version",
            "added",
            "Version of the Cassandra schema ORS expects.",
            effect="at startup",
            why="No default: the schema version must match what was installed in Cassandra.",
        ),
        Option(
            "persistence",
            "cassandra-strategy-class",
            "choice",
            "added",
            "Cassandra replication strategy: SimpleStrategy for a single cluster, "
            "NetworkTopologyStrategy for data centers.",
            default="SimpleStrategy",
            choices=("SimpleStrategy", "NetworkTopologyStrategy"),
            effect="at startup (when the keyspace is created)",
            why="SimpleStrategy matches the single-cluster deployment that 8.1.2 had; "
            "the `org.apache.cassandra.locator.` prefix is also accepted, as Cassandra does.",
        ),
        Option(
            "persistence",
            "cassandra-strategy-options",
            "replication",
            "added",
            "Replication: one factor for SimpleStrategy (3 or replication_factor:3), "
            "datacenter:factor pairs for NetworkTopologyStrategy (London:3,Paris:2).",
            default="replication_factor:1",
            effect="at startup (when the keyspace is created)",
            why="A factor of 1 is the smallest that works on one node; production "
            "clusters should raise it. The two forms are Cassandra's own.",
        ),
        Option("cluster", "name", "removed", "removed", "Cluster name (8.1.2).", why=_REMOVED_WHY),
        Option("cluster", "super_node", "removed", "removed", "Super node (8.1.2).", why=_REMOVED_WHY),
        Option(
            "orchestration",
            "mcr-pull-by-msn-only",
            "removed",
            "removed",
            "Multimedia pulled by the master node only (8.1.2).",
            why=_REMOVED_WHY,
        ),
    )
}

#: The section 8.1.3 drops whole, and the one option it drops from a kept section.
REMOVED_SECTION = "cluster"
_REMOVED_OPTION = ("orchestration", "mcr-pull-by-msn-only")

_SECTIONS = sorted({o.section for o in SCHEMA.values()} | {REMOVED_SECTION})
_SECTIONS_FOLDED = {name.lower() for name in _SECTIONS}
_FOLDED: dict[str, Option] = {key.lower(): o for key, o in SCHEMA.items()}
_IN_SECTION: dict[str, list[str]] = {}
_BY_NAME: dict[str, list[Option]] = {}
for _o in SCHEMA.values():
    _BY_NAME.setdefault(_o.name, []).append(_o)
    _IN_SECTION.setdefault(_o.section, []).append(_o.name)
del _o


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``option=value`` line; ``value`` is the text after ``=``, stripped."""

    section: str
    option: str
    value: str
    line: int


@dataclass(slots=True)
class OptionFile:
    """A parsed option file; ``lines`` are its raw lines, line endings kept."""

    path: str
    lines: list[bytes]
    entries: list[Entry] = field(default_factory=list)
    headers: list[tuple[str, int]] = field(default_factory=list)

    def get(self, section: str, option: str) -> Entry | None:
        """The entry that sets ``section/option`` (the last one, if repeated)."""
        for entry in reversed(self.entries):
            if entry.section == section and entry.option == option:
                return entry
        return None

    def last_entries(self) -> dict[tuple[str, str], Entry]:
        """``(section, option)`` to the entry that sets it (the last one), in one pass."""
        return {(entry.section, entry.option): entry for entry in self.entries}

    def sections(self) -> dict[str, dict[str, str]]:
        """The options by section, repeated sections merged, the last value winning."""
        merged: dict[str, dict[str, str]] = {name: {} for name, _ in self.headers}
        for entry in self.entries:
            merged[entry.section][entry.option] = entry.value
        return merged


_HEADER = re.compile(r"\[(?P<name>[^\]]*)\]\s*(?:[#;].*)?")


def _split_lines(data: bytes) -> list[bytes]:
    # Only b"\n" ends a line, so CRLF files keep their "\r" in the raw line and
    # migrate writes them back unchanged.
    lines = data.split(b"\n")
    out = [line + b"\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def _decode(path: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise OptionsError(
            path,
            line,
            f"not UTF-8 (byte 0x{data[exc.start]:02x} at column {column}); "
            "convert the export first, e.g. iconv -f latin1 -t utf-8",
        ) from None


def _parse(path: str, data: bytes) -> tuple[OptionFile, list[Problem]]:
    _decode(path, data)
    result = OptionFile(path, _split_lines(data))
    errors: list[Problem] = []
    section: str | None = None
    for number, raw in enumerate(result.lines, 1):
        text = raw.decode("utf-8")
        if number == 1:
            text = text.removeprefix("\ufeff")
        text = text.strip()
        if not text or text[0] in "#;":
            continue
        if text.startswith("["):
            match = _HEADER.fullmatch(text)
            if match is None:
                errors.append(Problem(path, number, None, None, ERROR, "section header has no closing ']'"))
                # Read on as if the ']' were there, so the lines below are not
                # reported again as options outside any section.
                section = text[1:].strip() or None
                continue
            name = match["name"].strip()
            if not name:
                errors.append(Problem(path, number, None, None, ERROR, "empty section name '[]'"))
                section = None
                continue
            section = name
            result.headers.append((name, number))
            continue
        if "=" not in text:
            errors.append(
                Problem(
                    path,
                    number,
                    None,
                    None,
                    ERROR,
                    f"expected option=value, [section] or a comment, got {_shorten(text)!r} (no '=')",
                )
            )
            continue
        name, _, value = text.partition("=")
        name = name.strip()
        if not name:
            errors.append(Problem(path, number, section, None, ERROR, "no option name before '='"))
            continue
        if section is None:
            errors.append(
                Problem(path, number, None, None, ERROR, f"option {name!r} before any [section] header")
            )
            continue
        result.entries.append(Entry(section, name, value.strip(), number))
    return result, errors


def _shorten(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _FILE_KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _check_input(name: str, mode: int, size: int) -> None:
    if stat.S_ISDIR(mode):
        raise OptionsError(name, None, "is a directory, not an option file")
    if not stat.S_ISREG(mode):
        raise OptionsError(name, None, f"is {_kind(mode)}; option files are read only from regular files")
    if size > MAX_FILE_BYTES:
        raise OptionsError(name, None, f"is {size} bytes; option files over {MAX_FILE_BYTES} bytes are refused")


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    name = os.fspath(path)
    try:
        # stat first, so that a FIFO or a device is refused without opening it
        # (opening can block or have side effects); fstat again after opening,
        # in case the path was swapped in between.
        info = os.stat(name)
        _check_input(name, info.st_mode, info.st_size)
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OptionsError(name, None, "no such file") from None
    except (OSError, ValueError) as exc:
        raise OptionsError(name, None, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        info = os.fstat(fd)
        _check_input(name, info.st_mode, info.st_size)
        chunks = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        _check_input(name, info.st_mode, size)
        return b"".join(chunks)
    except OSError as exc:
        raise OptionsError(name, None, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read(path: str | os.PathLike[str]) -> OptionFile:
    """Read and parse an exported option file.

    Raises :class:`OptionsError` when the file is missing or unreadable, is not
    UTF-8, or has a malformed line (the error lists every malformed line in
    ``problems``). Values stay text; :func:`check` validates them.
    """
    name = os.fspath(path)
    option_file, errors = _parse(name, _read_bytes(name))
    if errors:
        first = errors[0]
        raise OptionsError(name, first.line, first.message, section=first.section, problems=errors)
    return option_file


# --------------------------------------------------------------------------- checking


_INT = re.compile(r"[0-9]+")
# Each digit run can be matched one way only: "[0-9]+\.?[0-9]*" let a long run
# of digits followed by junk backtrack quadratically.
_SIGNED_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_KEYSPACE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")
_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_URL = re.compile(r"https?://[^\s/?#]+(?:[/?#]\S*)?", re.IGNORECASE)
_STRATEGY_PREFIX = "org.apache.cassandra.locator."


def _int_problem(option: Option, value: str) -> str | None:
    """None when ``value`` is valid for the integer ``option``, else the message."""
    unit = f" {option.unit}" if option.unit in ("ms", "s") else ""
    if _INT.fullmatch(value):
        number = int(value)
        if option.minimum is not None and number < option.minimum:
            return f"must be at least {option.minimum}{unit}, got {value!r}"
        if option.maximum is not None and number > option.maximum:
            return f"must be at most {option.maximum}{unit}, got {value!r}"
        return None
    if not value:
        return f"empty value; expected a whole number from {option.valid_text()}"
    if _SIGNED_NUMBER.fullmatch(value):
        if value.startswith("-") and option.zero:
            return f"must not be negative, got {value!r}; 0 means {option.zero}"
        if value.startswith("-"):
            return f"must not be negative, got {value!r}"
        if value.startswith("+"):
            return f"write the number without a sign, got {value!r}"
        return f"must be a whole number{unit}, got {value!r}"
    return f"must be a whole number from {option.valid_text()}{unit}, got {value!r}"


def _value_problem(option: Option, value: str) -> str | None:
    if option.kind == "integer":
        return _int_problem(option, value)
    if option.kind == "boolean":
        if value.lower() in ("true", "false"):
            return None
        return f"must be true or false, got {value!r}"
    if option.kind == "url":
        if not value or _URL.fullmatch(value):
            return None
        return f"must be an absolute http or https URL, got {value!r}"
    if option.kind == "keyspace":
        if _KEYSPACE.fullmatch(value):
            return None
        return f"not a Cassandra keyspace name ({_KIND_TEXT['keyspace']}), got {value!r}"
    if option.kind == "version":
        if _VERSION.fullmatch(value):
            return None
        return f"must be {_KIND_TEXT['version']}, got {value!r}"
    if option.kind == "choice":
        if _strategy(value) in option.choices:
            return None
        close = _closest(_strategy(value), option.choices, lower=True)
        hint = f"; did you mean {close}?" if close else ""
        return f"must be {option.valid_text()}, got {value!r}{hint}"
    if option.kind == "replication":
        return _replication_syntax(value)
    return None


def _strategy(value: str) -> str:
    return value.removeprefix(_STRATEGY_PREFIX)


def _replication(value: str) -> tuple[int | None, dict[str, int] | None]:
    """Split strategy options into (single factor, datacenter pairs); None where absent."""
    text = value.strip()
    if _INT.fullmatch(text):
        return int(text), None
    pairs: dict[str, int] = {}
    for part in text.split(","):
        name, sep, factor = part.partition(":")
        pairs[name.strip()] = int(factor.strip()) if sep and _INT.fullmatch(factor.strip()) else -1
    if list(pairs) == ["replication_factor"]:
        return pairs["replication_factor"], None
    return None, pairs


def _replication_syntax(value: str) -> str | None:
    if not value:
        return "empty value; expected a replication factor or datacenter:factor pairs"
    parts = [part.strip() for part in value.split(",")]
    seen: set[str] = set()
    for part in parts:
        if _INT.fullmatch(part) and len(parts) == 1:
            return None if int(part) >= 1 else "replication factor must be at least 1"
        name, sep, factor = part.partition(":")
        name, factor = name.strip(), factor.strip()
        if not sep or not name:
            return f"expected a factor or name:factor pairs separated by commas, got {_shorten(part)!r}"
        if not _INT.fullmatch(factor) or int(factor) < 1:
            return f"replication factor for {name!r} must be a whole number of at least 1, got {factor!r}"
        if name in seen:
            return f"datacenter {name!r} is given twice"
        seen.add(name)
    return None


def _within(a: str, b: str, bound: int) -> int | None:
    """The edit distance of ``a`` and ``b`` when it is at most ``bound``, else None.

    Only the diagonal band of width ``bound`` is computed, so the cost is
    linear in the names' length: a 10,000-character option name costs no more
    than a short one per character.
    """
    if abs(len(a) - len(b)) > bound:
        return None
    far = bound + 1
    previous = [j if j <= bound else far for j in range(len(b) + 1)]
    for i, ca in enumerate(a, 1):
        low, high = max(1, i - bound), min(len(b), i + bound)
        current = [far] * (len(b) + 1)
        current[0] = i if i <= bound else far
        best = current[0]
        for j in range(low, high + 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != b[j - 1]))
            current[j] = cost if cost <= bound else far
            best = min(best, current[j])
        if best > bound:
            return None
        previous = current
    return previous[-1] if previous[-1] <= bound else None


def _closest(name: str, candidates: Iterable[str], *, lower: bool = False) -> str | None:
    """The candidate within a typo or two of ``name``: a near-miss, not a different word."""
    best: tuple[int, str] | None = None
    for candidate in candidates:
        if candidate == name:
            continue
        a, b = (name.lower(), candidate.lower()) if lower else (name, candidate)
        d = _within(a, b, 1 if len(candidate) < 8 else 2)
        if d is not None and (best is None or d < best[0]):
            best = (d, candidate)
    return best[1] if best else None


def check(option_file: OptionFile) -> list[Problem]:
    """Every problem in a parsed option file, in line order.

    Errors: values ORS or orsguard would reject, and strategy options that do
    not fit the strategy class. Warnings: options 8.1.3 removed, near-misses of
    known names, known options in the wrong section, options set twice. Notes:
    options the schema does not know (kept; real applications carry many).
    """
    path = option_file.path
    problems: list[Problem] = []

    def add(line: int, section: str | None, option: str | None, severity: str, message: str) -> None:
        problems.append(Problem(path, line, section, option, severity, message))

    for name, line in option_file.headers:
        if name == REMOVED_SECTION:
            add(line, name, None, WARNING, "section removed in ORS 8.1.3; migrate deletes it")
        elif name not in _SECTIONS and name.lower() in _SECTIONS_FOLDED:
            add(
                line,
                name,
                None,
                WARNING,
                f"section names are case-sensitive: this is not [{name.lower()}], "
                f"and its options are not used as [{name.lower()}] options",
            )
        elif name not in _SECTIONS:
            close = _closest(name, _SECTIONS, lower=True)
            if close:
                add(line, name, None, WARNING, f"unknown section; did you mean [{close}]?")

    last: dict[tuple[str, str], Entry] = {}
    for entry in option_file.entries:
        key = (entry.section, entry.option)
        if key in last:
            add(
                entry.line,
                *key,
                WARNING,
                f"set again (first at line {last[key].line}); this later value is used",
            )
        last[key] = entry
        problems.extend(_check_entry(path, entry))

    problems.extend(_check_strategy(path, option_file))
    return sorted(problems, key=lambda p: p.line)


def _check_entry(path: str, entry: Entry) -> list[Problem]:
    section, name = entry.section, entry.option

    def one(severity: str, message: str) -> list[Problem]:
        return [Problem(path, entry.line, section, name, severity, message)]

    option = SCHEMA.get(f"{section}/{name}")
    if option is not None and option.removed:
        return one(
            WARNING, "removed in ORS 8.1.3 (no longer needed with the 8.1.3 cluster design); migrate deletes it"
        )
    if option is not None:
        message = _value_problem(option, entry.value)
        if message:
            return one(ERROR, message)
        message = _plausibility_problem(option, entry.value)
        return one(WARNING, message) if message else []
    if section == REMOVED_SECTION:
        return one(WARNING, "section cluster is removed in ORS 8.1.3; migrate deletes it")
    elsewhere = [o for o in _BY_NAME.get(name, ()) if not o.removed]
    if elsewhere:
        return one(WARNING, f"ORS reads this option from [{elsewhere[0].section}], not [{section}]")
    folded = _FOLDED.get(f"{section}/{name}".lower())
    if folded is not None:
        # Names are matched exactly everywhere (check, limits, show, migrate),
        # so a line that differs only in case sets nothing: say so plainly.
        return one(
            WARNING,
            f"option names are case-sensitive: this line does not set {folded.key}; write {folded.name}",
        )
    close = _closest(name, _IN_SECTION.get(section, ()), lower=True)
    if close:
        return one(WARNING, f"unknown option; did you mean {section}/{close}?")
    return one(NOTE, "not in orsguard's schema; kept as is")


def _plausibility_problem(option: Option, value: str) -> str | None:
    """A warning for a valid millisecond value so small that seconds were probably meant."""
    if option.implausible_below is None or not _INT.fullmatch(value):
        return None
    number = int(value)
    if 0 < number < option.implausible_below:
        return (
            f"{number} ms: did you mean seconds? The value is in milliseconds ({number} s is "
            f"{number * 1000}); values from 1 to {option.implausible_below - 1} are implausible here"
        )
    return None


def _check_strategy(path: str, option_file: OptionFile) -> list[Problem]:
    cls = option_file.get("persistence", "cassandra-strategy-class")
    opts = option_file.get("persistence", "cassandra-strategy-options")
    cls_value = _strategy(cls.value) if cls else SCHEMA["persistence/cassandra-strategy-class"].default
    if cls_value not in ("SimpleStrategy", "NetworkTopologyStrategy"):
        return []
    if opts is None:
        if cls is not None and cls_value == "NetworkTopologyStrategy":
            return [
                Problem(
                    path,
                    cls.line,
                    "persistence",
                    "cassandra-strategy-class",
                    ERROR,
                    "NetworkTopologyStrategy needs cassandra-strategy-options with datacenter:factor pairs",
                )
            ]
        return []
    if _replication_syntax(opts.value) is not None:
        return []
    factor, pairs = _replication(opts.value)
    where = f" (cassandra-strategy-class at line {cls.line})" if cls else " (the default class)"
    if cls_value == "SimpleStrategy" and pairs is not None:
        message = (
            f"datacenter:factor pairs need NetworkTopologyStrategy, but the class is SimpleStrategy{where}; "
            "give one factor, e.g. replication_factor:3"
        )
    elif cls_value == "NetworkTopologyStrategy" and factor is not None:
        message = (
            f"NetworkTopologyStrategy needs datacenter:factor pairs{where}, got a single factor; "
            "e.g. London:3,Paris:3"
        )
    else:
        return []
    return [Problem(path, opts.line, "persistence", "cassandra-strategy-options", ERROR, message)]


# --------------------------------------------------------------------------- effective values


@dataclass(frozen=True, slots=True)
class Setting:
    """One effective value: ``origin`` is ``line N``, ``default``, ``unset`` or an env var name."""

    section: str
    option: str
    value: str | None
    unit: str
    origin: str
    known: bool


def _env_name(option: str) -> str:
    return ENV_PREFIX + option.upper().replace("-", "_")


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def effective(option_file: OptionFile, *, environ: Mapping[str, str] | None = None) -> list[Setting]:
    """The value each option has: from the environment, the file or the default.

    Lists the schema's options (removed ones only when the file has them) in
    schema order, then the file's other options in file order. ``environ``
    (default :data:`os.environ`) overrides ``[scxml]`` limits.
    """
    env = _environ(environ)
    settings: list[Setting] = []
    for option in SCHEMA.values():
        entry = option_file.get(option.section, option.name)
        if option.removed and entry is None:
            continue
        value, origin = (entry.value, f"line {entry.line}") if entry else (option.default, "default")
        if value is None:
            origin = "unset"
        if option.limit and _env_name(option.name) in env:
            value, origin = env[_env_name(option.name)].strip(), _env_name(option.name)
        settings.append(Setting(option.section, option.name, value, option.unit, origin, True))
    shown = {(s.section, s.option) for s in settings}
    last = option_file.last_entries()
    for entry in option_file.entries:
        key = (entry.section, entry.option)
        if key not in shown and last[key] is entry:
            settings.append(Setting(entry.section, entry.option, entry.value, "", f"line {entry.line}", False))
    return settings


# --------------------------------------------------------------------------- limits


def limits_from_options(
    source: str | os.PathLike[str] | OptionFile | None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Limits:
    """Limits from an option file's ``[scxml]`` section, then the environment.

    ``source`` is a path, an already read :class:`OptionFile`, or None for the
    defaults. Options absent from the file keep :class:`Limits` defaults. The
    variables ``ORSGUARD_SCXML_<OPTION>`` (e.g. ``ORSGUARD_SCXML_MAX_PENDING_EVENTS``)
    override the file in the file's units; ``environ`` defaults to
    :data:`os.environ`, pass ``{}`` to ignore it. Raises :class:`OptionsError`
    naming the file and line (or the variable) of a bad value; problems outside
    ``[scxml]`` do not stop the limits from being built.
    """
    option_file = read(source) if isinstance(source, (str, os.PathLike)) else source
    env = _environ(environ)
    # Keyed by Limits field; Limits.__post_init__ checks and converts each value.
    values: dict[str, Any] = {}
    for option in SCHEMA.values():
        if option.limit is None:
            continue
        var = _env_name(option.name)
        if var in env:
            text, where, line = env[var].strip(), f"environment variable {var}", None
        elif option_file is not None and (entry := option_file.get(option.section, option.name)):
            text, where, line = entry.value, option_file.path, entry.line
        else:
            continue
        message = _int_problem(option, text)
        if message:
            raise OptionsError(where, line, message, section=option.section, option=option.name)
        doubt = _plausibility_problem(option, text)
        if doubt:
            # Still applied: the value is valid, only unlikely. A host logs it at
            # start and on every SIGHUP reload.
            log.warning("%s", _locate(where, line, option.section, option.name, f"warning: {doubt}"))
        number = int(text)
        values[option.limit] = number / 1000 if option.unit == "ms" else number
    return Limits(**values)


def install_sighup(
    callback: Callable[[], Any],
    *,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Callable[[], None]:
    """Call ``callback()`` on each SIGHUP; returns a function that removes the handler.

    With ``loop`` the handler is registered with ``loop.add_signal_handler``
    and runs in the loop; without, with :func:`signal.signal`, which only the
    main thread may call. Raises RuntimeError where SIGHUP does not exist.
    """
    if not hasattr(signal, "SIGHUP"):
        raise RuntimeError("SIGHUP does not exist on this platform; reload the options another way")
    if loop is not None:
        loop.add_signal_handler(signal.SIGHUP, callback)

        def remove_from_loop() -> None:
            loop.remove_signal_handler(signal.SIGHUP)

        return remove_from_loop

    previous = signal.signal(signal.SIGHUP, lambda signum, frame: callback())

    def restore() -> None:
        signal.signal(signal.SIGHUP, previous)

    return restore


class LimitsSource:
    """The limits of one option file, re-read on demand or on SIGHUP.

    ORS applies ``[scxml]`` changes immediately; orsguard does the same for a
    long-running host: on SIGHUP the file is read again and the callback passes
    the new :class:`Limits` to the running sessions (``session.limits = new``),
    which apply them at their next check. A file that has become invalid is
    reported and the old values stay in force, so the host keeps running.
    """

    def __init__(self, path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None) -> None:
        self.path = os.fspath(path)
        self._environ = environ
        #: The limits now in force; replaced only by a successful :meth:`reload`.
        self.limits: Limits
        #: ``orchestration/send-retries`` now in force (the schema default when unset).
        self.send_retries: int
        self.limits, self.send_retries = self._load()

    def _load(self) -> tuple[Limits, int]:
        option_file = read(self.path)
        limits = limits_from_options(option_file, environ=self._environ)
        option = SCHEMA["orchestration/send-retries"]
        entry = option_file.get(option.section, option.name)
        if entry is None:
            return limits, int(str(option.default))
        message = _int_problem(option, entry.value)
        if message:
            raise OptionsError(self.path, entry.line, message, section=option.section, option=option.name)
        return limits, int(entry.value)

    def reload(self) -> Limits:
        """Read the file again; on success the new values are kept and the limits returned.

        Raises :class:`OptionsError` (leaving :attr:`limits` and
        :attr:`send_retries` unchanged) when the file cannot be read or a value
        it uses (``[scxml]``, ``orchestration/send-retries``) is invalid.
        """
        self.limits, self.send_retries = self._load()
        return self.limits

    def install_sighup(
        self,
        callback: Callable[[Limits], Any],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        on_error: Callable[[OptionsError], Any] | None = None,
    ) -> Callable[[], None]:
        """On each SIGHUP: :meth:`reload`, then ``callback(new_limits)``.

        ``loop`` as for the module's :func:`install_sighup`. A failed reload
        goes to ``on_error``, or is logged as an error when there is none, and
        the callback is not called. Returns a function that removes the handler.
        """

        def handle() -> None:
            try:
                new = self.reload()
            except OptionsError as exc:
                if on_error is None:
                    log.error("options not reloaded, limits unchanged: %s", exc)
                else:
                    on_error(exc)
                return
            log.info("options reloaded from %s: %s", self.path, new)
            callback(new)

        return install_sighup(handle, loop=loop)


# --------------------------------------------------------------------------- migration


@dataclass(frozen=True, slots=True)
class Migration:
    """The result of :func:`migrate`: the new bytes and what changed.

    ``remaining`` lists the warnings :func:`check` still gives for the lines
    migration kept (with their line numbers in the original file): migration
    deletes what 8.1.3 removed and nothing else.
    """

    data: bytes
    removed: list[tuple[int, str]]
    defaults: list[Option]
    remaining: list[Problem] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when migration removed anything."""
        return bool(self.removed)


def migrate(option_file: OptionFile) -> Migration:
    """Migrate an 8.1.2 export to 8.1.3, as the seed procedure's step 2 does.

    Deletes every ``[cluster]`` section and ``orchestration/mcr-pull-by-msn-only``;
    every other line is kept byte for byte. A removed section takes its header
    and the lines down to its last option; comments and blank lines after that
    stay, since they usually introduce the next section. ``removed`` lists
    ``(line, what)``; ``defaults`` the options 8.1.3 added that the file leaves
    at their defaults.
    """
    drop: dict[int, str] = {}
    # The last option line of each removed section, found in one pass over the
    # entries (entries and headers are both in line order).
    headers = option_file.headers
    last_option: dict[int, int] = {}
    index = -1
    for entry in option_file.entries:
        while index + 1 < len(headers) and headers[index + 1][1] < entry.line:
            index += 1
        if index >= 0 and headers[index][0] == REMOVED_SECTION:
            last_option[headers[index][1]] = entry.line
    for name, line in headers:
        if name != REMOVED_SECTION:
            continue
        drop[line] = f"[{name}]"
        for number in range(line + 1, last_option.get(line, line) + 1):
            drop[number] = ""
    for entry in option_file.entries:
        if entry.section == REMOVED_SECTION or (entry.section, entry.option) == _REMOVED_OPTION:
            drop[entry.line] = f"{entry.section}/{entry.option}"
    data = b"".join(raw for number, raw in enumerate(option_file.lines, 1) if number not in drop)
    removed = sorted((line, what) for line, what in drop.items() if what)
    last = option_file.last_entries()
    defaults = [o for o in SCHEMA.values() if o.change == "added" and (o.section, o.name) not in last]
    remaining = [p for p in check(option_file) if p.severity == WARNING and p.line not in drop]
    return Migration(data, removed, defaults, remaining)


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
                f"{out} is {_kind(info.st_mode)}; migrate writes to regular files, FIFOs and character devices"
            )
    return "replace", os.path.realpath(out) if os.path.islink(out) else out


# --------------------------------------------------------------------------- command line


def add_subcommands(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``options`` with ``check``, ``migrate`` and ``show`` to an argparse subparsers object.

    Each leaf sets ``func``, a handler taking the parsed args and returning the
    exit status: dispatch with ``sys.exit(args.func(args))``.
    """
    parser = subparsers.add_parser(
        "options",
        help="check, migrate and show ORS option files",
        description="Work with ORS option files exported from Configuration Manager.",
    )
    sub = parser.add_subparsers(dest="options_command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "check",
        help="report problems, one per line",
        description="Report each problem as FILE:LINE: section/option: severity: message. "
        "Exit 1 when there is an error; warnings and notes do not fail.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("-q", "--quiet", action="store_true", help="leave out notes about unknown options")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser(
        "migrate",
        help="migrate an 8.1.2 export to 8.1.3",
        description="Delete section cluster and orchestration/mcr-pull-by-msn-only, keep every "
        "other line byte for byte. FILE is never changed unless --in-place is given, and then "
        "the original is kept as FILE.bak for rollback.",
    )
    p.add_argument("file", metavar="FILE")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("-o", "--output", metavar="OUT", help="write the migrated file to OUT ('-': stdout)")
    target.add_argument(
        "--in-place", action="store_true", help="rewrite FILE, keeping the original as FILE.bak"
    )
    p.set_defaults(func=_cmd_migrate)

    p = sub.add_parser(
        "show",
        help="show effective values",
        description="Show each option's effective value and where it comes from: the "
        "file's line, the default, or an ORSGUARD_SCXML_* environment variable.",
    )
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=_cmd_show)
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


def _report_errors(exc: OptionsError) -> None:
    problems: Sequence[Problem | OptionsError] = exc.problems or [exc]
    for problem in problems:
        _err(str(problem))


def _cmd_check(args: argparse.Namespace) -> int:
    _tolerant_output()
    try:
        option_file, problems = _parse(args.file, _read_bytes(args.file))
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


def _errors_of(option_file: OptionFile) -> list[Problem]:
    return [p for p in check(option_file) if p.severity == ERROR]


def _cmd_migrate(args: argparse.Namespace) -> int:
    _tolerant_output()
    try:
        option_file = read(args.file)
    except OptionsError as exc:
        _report_errors(exc)
        _err(f"nothing written; fix {args.file} first")
        return 1
    errors = _errors_of(option_file)
    if errors:
        for problem in errors:
            _err(str(problem))
        _err(f"nothing written; fix the errors first (orsguard options check {args.file})")
        return 1
    result = migrate(option_file)

    if args.in_place:
        # A symbolic link is kept: the file it points to is migrated, and its
        # backup goes beside that file.
        target = os.path.realpath(args.file) if os.path.islink(args.file) else args.file
        how = "replace"
    else:
        target = args.output
        try:
            how, target = _plan_output(args.output)
        except _Refused as exc:
            _err(f"{exc}. Nothing written.")
            return 1
        except OSError as exc:
            _err(f"cannot write {args.output}: {exc.strerror or exc}. {args.file} is unchanged.")
            return 1
        if how == "replace" and os.path.exists(target) and os.path.samefile(target, args.file):
            _err(f"{args.output} is the input file; use --in-place to rewrite it (keeps {args.file}.bak). "
                 "Nothing written.")
            return 1
    report = sys.stderr if how == "stdout" else sys.stdout

    if args.in_place and not result.changed:
        print(f"{args.file}: nothing to migrate; left unchanged", file=report)
        return 0
    if args.in_place and os.path.lexists(target + ".bak"):
        _err(f"{target}.bak exists (it may be your rollback copy); move it away first. Nothing written.")
        return 1
    writing = target
    try:
        if args.in_place:
            writing = target + ".bak"
            _write_atomic(writing, b"".join(option_file.lines), mode_from=target)
            writing = target
            _write_atomic(writing, result.data, mode_from=target)
        elif how == "through":
            _write_through(target, result.data)
        elif how == "replace":
            _write_atomic(target, result.data, mode_from=target if os.path.isfile(target) else None)
        else:
            sys.stdout.buffer.write(result.data)
            sys.stdout.flush()
    except _Refused as exc:
        _err(f"{exc}. Nothing written.")
        return 1
    except OSError as exc:
        # Replacing is atomic, so a failure leaves FILE (and any OUT) as it was.
        _err(f"cannot write {writing}: {exc.strerror or exc}. {args.file} is unchanged.")
        return 1

    for line, what in result.removed:
        print(f"{args.file}:{line}: removed {what}", file=report)
    if not result.removed:
        print(f"{args.file}: nothing to remove; already an 8.1.3 file", file=report)
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
    if args.in_place:
        print(f"wrote {target}; original kept as {target}.bak", file=report)
    elif how != "stdout":
        print(f"wrote {target}", file=report)
    return 0


def _unit_suffix(option: Option) -> str:
    return f" {option.unit}" if option.unit else ""


def _cmd_show(args: argparse.Namespace) -> int:
    _tolerant_output()
    try:
        option_file = read(args.file)
    except OptionsError as exc:
        _report_errors(exc)
        return 1
    errors = _errors_of(option_file)
    if errors:
        for problem in errors:
            _err(str(problem))
        return 1
    try:
        # Only the environment can still be wrong here: the file's values passed check().
        limits_from_options(option_file)
    except OptionsError as exc:
        _err(str(exc))
        return 1
    rows = [("OPTION", "VALUE", "UNIT", "FROM")]
    for s in effective(option_file):
        folded = None if s.known else _FOLDED.get(f"{s.section}/{s.option}".lower())
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m orsguard.options COMMAND ...``: the same as ``orsguard options COMMAND ...``."""
    parser = argparse.ArgumentParser(prog="orsguard")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["options", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (``... | head``): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
