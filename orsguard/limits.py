"""The five ORS 8.1.3 session limits as one immutable value."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from orsguard._core import LIMIT_OPTIONS

#: ORS option name (section ``scxml``) for each field of :class:`Limits`, in the core's
#: order of the limits (its ``Limit`` enum); a field is its option with ``_`` for ``-``.
OPTION_NAMES: dict[str, str] = {option.replace("-", "_"): option for option in LIMIT_OPTIONS}


@dataclass(frozen=True, slots=True)
class Limits:
    """Session limits; 0 switches a limit off.

    Counts are integers, the two times are seconds (decimals allowed). The
    defaults are orsguard's; README.md ("Limits") says why each was chosen.
    """

    max_microstep_count: int = 1000
    max_state_entry_count: int = 10000
    max_pending_events: int = 1000
    process_event_timeout: float = 5.0
    max_session_age: float = 86400.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{OPTION_NAMES[f.name]} must be a number, not {value!r}")
            if value < 0 or value != value:
                raise ValueError(f"{OPTION_NAMES[f.name]} must be >= 0 (0 = unlimited), got {value!r}")
            if f.type == "int" and value != int(value):
                raise ValueError(f"{OPTION_NAMES[f.name]} must be a whole number, got {value!r}")
            if f.type == "int":
                object.__setattr__(self, f.name, int(value))
            else:
                object.__setattr__(self, f.name, float(value))

    @classmethod
    def unlimited(cls) -> Limits:
        """All five limits off."""
        return cls(0, 0, 0, 0, 0)

    def replace(self, **changes: float) -> Limits:
        """A copy with some fields changed (keyword names as in the constructor)."""
        # __post_init__ checks and converts each value (a whole float is a valid count),
        # which the per-field types dataclasses.replace is checked against do not express.
        unchecked: dict[str, Any] = changes
        return replace(self, **unchecked)

    def by_option(self) -> dict[str, float]:
        """The values keyed by ORS option name, e.g. ``{'max-microstep-count': 1000, ...}``."""
        return {OPTION_NAMES[f.name]: getattr(self, f.name) for f in fields(self)}
