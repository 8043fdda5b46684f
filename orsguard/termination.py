"""Termination: why a guard stopped a session, as :attr:`Session.termination` reports it."""

from __future__ import annotations

from typing import Any


class Termination:
    """Why a guard stopped a session: the ORS option, its value, what was seen, and where.

    ``trail`` lists the last transitions taken, oldest first, each as
    ``"source -> target"``; ``path`` strings their states together so a loop
    reads as ``a -> b -> a -> b``.
    """

    __slots__ = ("option", "limit", "observed", "state", "transition", "trail")

    def __init__(
        self, option: str, limit: float, observed: float, state: str | None, transition: str | None, trail: list[str]
    ) -> None:
        self.option = option
        self.limit = limit
        self.observed = observed
        self.state = state
        self.transition = transition
        self.trail = list(trail)

    @property
    def path(self) -> str:
        """The trail's states joined by ``->``, each state once between its two transitions."""
        parts: list[str] = []
        for label in self.trail:
            src, _, tgt = label.partition(" -> ")
            if not parts or parts[-1] != src:
                parts.append(src)
            parts.append(tgt)
        return " -> ".join(parts)

    @property
    def loop(self) -> tuple[str, float] | None:
        """The shortest cycle the trail repeats, as ``(path, times)``, or None."""
        trail = self.trail
        n = len(trail)
        for period in range(1, n // 2 + 1):
            if all(trail[i] == trail[i + period] for i in range(n - period)):
                cycle = Termination(self.option, self.limit, self.observed, None, None, trail[:period])
                return cycle.path, n / period
        return None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of all fields."""
        return {
            "option": self.option,
            "limit": self.limit,
            "observed": self.observed,
            "state": self.state,
            "transition": self.transition,
            "trail": list(self.trail),
        }

    def __str__(self) -> str:
        observed: object = self.observed
        if isinstance(observed, float):
            observed = f"{observed:.3f}s"
        where: list[str] = []
        if self.transition:
            where.append(f"taking {self.transition}")
        if self.state:
            where.append(f"entering {self.state}")
        text = f"{self.option}={self.limit:g} exceeded (observed {observed})"
        if where:
            text += " while " + ", ".join(where)
        loop = self.loop
        if loop is not None:
            path, times = loop
            text += f"; loop: {path} (repeated {times:g} times in the last {len(self.trail)} transitions)"
        elif self.trail:
            text += f"; trail: {self.path}"
        return text

    def __repr__(self) -> str:
        return f"<Termination {self}>"
