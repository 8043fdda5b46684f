"""Migration of an 8.1.2 export to 8.1.3: delete what 8.1.3 removed, keep every other byte."""

from __future__ import annotations

from dataclasses import dataclass, field

from orsguard.options.check import check
from orsguard.options.problem import WARNING, Problem
from orsguard.options.reader import OptionFile
from orsguard.options.schema import REMOVED_OPTION, REMOVED_SECTION, SCHEMA, Option


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
        if entry.section == REMOVED_SECTION or (entry.section, entry.option) == REMOVED_OPTION:
            drop[entry.line] = f"{entry.section}/{entry.option}"
    data = b"".join(raw for number, raw in enumerate(option_file.lines, 1) if number not in drop)
    removed = sorted((line, what) for line, what in drop.items() if what)
    last = option_file.last_entries()
    defaults = [o for o in SCHEMA.values() if o.change == "added" and (o.section, o.name) not in last]
    remaining = [p for p in check(option_file) if p.severity == WARNING and p.line not in drop]
    return Migration(data, removed, defaults, remaining)
