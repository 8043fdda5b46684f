"""Sessions for tests: what the ``scxml`` pytest fixture hands out, usable from any test framework.

    harness = Harness()
    session = harness("strategy.scxml", data={"vip": True})
    session.send("call.arrived")
    assert session.outbox[0].event == "route.request"
    harness.close()      # cancels the sessions; raises StrictError for unexpected error events

Each session starts on its own :class:`~orsguard.VirtualClock` (time moves only
with ``advance``/``run``), in strict mode, with sends that leave it recorded in
``session.outbox`` rather than dispatched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from orsguard.clock import Clock, VirtualClock
from orsguard.coverage import Coverage
from orsguard.document import Document, load
from orsguard.limits import Limits
from orsguard.records import StrictError
from orsguard.session import Session

__all__ = ["Harness", "StrictError", "limits_from_options"]


def limits_from_options(options: Mapping[str, Any] | Limits | None) -> Limits | None:
    """``Limits`` from ORS option names (``{"max-microstep-count": 50}``) or keywords; None stays None."""
    if options is None or isinstance(options, Limits):
        return options
    changes = {}
    for name, value in options.items():
        field = str(name).replace("-", "_")
        if field not in Limits.__dataclass_fields__:
            raise ValueError(f"unknown limit {name!r}")
        changes[field] = value
    return Limits().replace(**changes)


class Harness:
    """Makes started sessions and cleans up after them.

    ``base`` is the directory relative document paths are looked up in first
    (then the working directory); ``coverage`` counts the sessions' states and
    transitions.
    """

    def __init__(self, *, base: str | os.PathLike[str] | None = None, coverage: Coverage | None = None) -> None:
        self.base = os.fspath(base) if base is not None else None
        self.coverage = coverage
        self.sessions: list[Session] = []

    def __call__(
        self,
        source: str | os.PathLike[str] | Document,
        *,
        limits: Limits | Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        strict: bool = True,
        clock: Clock | None = None,
        sends: str = "record",
        **options: Any,
    ) -> Session:
        """Load ``source`` (a path, SCXML text or a Document), start a session and return it.

        ``limits`` takes a :class:`~orsguard.Limits` or ORS option names;
        ``data`` overrides top-level ``<data>`` values; other keywords
        (``on_log``, ``on_transition``, ``ioprocessors``, ...) go to
        :class:`~orsguard.Session`.
        """
        session = Session(
            self.document(source),
            limits=limits_from_options(limits),
            clock=clock if clock is not None else VirtualClock(),
            data=data,
            strict=strict,
            sends=sends,
            **options,
        )
        if self.coverage is not None:
            self.coverage.add(session)
        self.sessions.append(session)
        session.start()
        return session

    def document(self, source: str | os.PathLike[str] | Document) -> Document:
        if isinstance(source, Document):
            return source
        if isinstance(source, os.PathLike) or not str(source).lstrip().startswith("<"):
            path = os.fspath(source)
            if self.base is not None and not os.path.isabs(path):
                beside = os.path.join(self.base, path)
                if os.path.exists(beside):
                    return load(beside)
            return load(path)
        return load(source)

    def check(self) -> None:
        """Raise :class:`StrictError` for the sessions' unexpected or missing error events so far."""
        problems = []
        for session in self.sessions:
            try:
                session.check()
            except StrictError as exc:
                problems.append(str(exc))
        if problems:
            raise StrictError("\n".join(problems))

    def close(self, *, expectations: bool = True) -> None:
        """Cancel the sessions (running their ``onexit``), count coverage, then :meth:`check` them.

        ``expectations=False`` leaves out expected errors that never came (for a
        caller that already checked them once the test itself was over).
        """
        sessions, self.sessions = self.sessions, []
        for session in sessions:
            session.cancel()
        if self.coverage is not None:
            self.coverage.harvest()
        problems = []
        for session in sessions:
            try:
                session.check(expectations=expectations)
            except StrictError as exc:
                problems.append(str(exc))
        if problems:
            raise StrictError("\n".join(problems))
