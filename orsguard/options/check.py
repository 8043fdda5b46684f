"""Checking a read option file: errors, warnings and notes, each with its line.

Errors are values ORS or orsguard would reject; warnings are what is valid but
likely wrong (options 8.1.3 removed, near-misses of known names, seconds written
where milliseconds are read, an option set twice); notes are options the
schema does not know, which real applications carry in numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from orsguard.options.problem import ERROR, NOTE, WARNING, Problem
from orsguard.options.reader import Entry, OptionFile, shorten
from orsguard.options.schema import KIND_TEXT, REMOVED_SECTION, SCHEMA, Option, known_ignoring_case

_SECTIONS = sorted({o.section for o in SCHEMA.values()} | {REMOVED_SECTION})
_SECTIONS_FOLDED = {name.lower() for name in _SECTIONS}
_IN_SECTION: dict[str, list[str]] = {}
_BY_NAME: dict[str, list[Option]] = {}
for _o in SCHEMA.values():
    _BY_NAME.setdefault(_o.name, []).append(_o)
    _IN_SECTION.setdefault(_o.section, []).append(_o.name)
del _o

_INT = re.compile(r"[0-9]+")
# Each digit run can be matched one way only: "[0-9]+\.?[0-9]*" let a long run
# of digits followed by junk backtrack quadratically.
_SIGNED_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_KEYSPACE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")
_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_URL = re.compile(r"https?://[^\s/?#]+(?:[/?#]\S*)?", re.IGNORECASE)
_STRATEGY_PREFIX = "org.apache.cassandra.locator."


def int_problem(option: Option, value: str) -> str | None:
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
        return int_problem(option, value)
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
        return f"not a Cassandra keyspace name ({KIND_TEXT['keyspace']}), got {value!r}"
    if option.kind == "version":
        if _VERSION.fullmatch(value):
            return None
        return f"must be {KIND_TEXT['version']}, got {value!r}"
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
            return f"expected a factor or name:factor pairs separated by commas, got {shorten(part)!r}"
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
        return one(WARNING, "removed in ORS 8.1.3 (no longer needed with the 8.1.3 cluster design); migrate deletes it")
    if option is not None:
        message = _value_problem(option, entry.value)
        if message:
            return one(ERROR, message)
        message = plausibility_problem(option, entry.value)
        return one(WARNING, message) if message else []
    if section == REMOVED_SECTION:
        return one(WARNING, "section cluster is removed in ORS 8.1.3; migrate deletes it")
    elsewhere = [o for o in _BY_NAME.get(name, ()) if not o.removed]
    if elsewhere:
        return one(WARNING, f"ORS reads this option from [{elsewhere[0].section}], not [{section}]")
    folded = known_ignoring_case(section, name)
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


def plausibility_problem(option: Option, value: str) -> str | None:
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
            f"NetworkTopologyStrategy needs datacenter:factor pairs{where}, got a single factor; e.g. London:3,Paris:3"
        )
    else:
        return []
    return [Problem(path, opts.line, "persistence", "cassandra-strategy-options", ERROR, message)]
