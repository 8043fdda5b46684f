"""Session clocks: the time a session ages by and its delayed events wait on.

A clock implements :class:`Clock`: ``now()`` (seconds), ``call_at(when,
callback)`` returning a handle with ``cancel()``, and the ways a session lets
time pass (``advance``, ``run_until``, ``settle``). :class:`VirtualClock` makes
tests deterministic: time moves only when told, and due callbacks run in time
order as it passes them. :class:`RealClock` is the monotonic clock for
synchronous use (callbacks run while :meth:`orsguard.Session.run` or
``advance`` waits); :class:`AsyncioClock` schedules on an asyncio loop so that
timers fire while a session is idle.

``process-event-timeout`` is always measured on the real monotonic clock,
whatever clock a session uses.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    """What :meth:`Clock.call_at` returns."""

    def cancel(self) -> None: ...


def _never() -> bool:
    return False


class Clock(Protocol):
    """What a session needs of a clock."""

    def now(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle: ...

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, running the timers that fall due meanwhile (``Session.advance``)."""
        ...

    def run_until(self, deadline: float, stop: Callable[[], bool] = _never) -> None:
        """Run timers as they fall due until ``deadline`` or until ``stop()`` is true (``Session.run``)."""
        ...

    def settle(self, checked_at: float) -> None:
        """Run the timers already due, ``checked_at`` being a monotonic time the caller just read.

        A session calls it after every event it processes, so that deliveries
        posted for "now" run: it must cost next to nothing when none is due.
        """
        ...


class _Timer:
    __slots__ = ("when", "seq", "callback", "cancelled", "clock")

    def __init__(self, when: float, seq: int, callback: Callable[[], object], clock: _HeapClock) -> None:
        self.when = when
        self.seq = seq
        self.callback: Callable[[], object] | None = callback
        self.cancelled = False
        # Set while the timer is in its clock's heap, so that cancelling it can be counted.
        self.clock: _HeapClock | None = clock

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        # A cancelled timer may wait in the heap until its time (a session-age timer:
        # a day): it must not keep its callback, and with it a whole session, alive.
        self.callback = None
        clock = self.clock
        if clock is not None:
            clock._cancelled_one()

    def __lt__(self, other: _Timer) -> bool:
        return (self.when, self.seq) < (other.when, other.seq)


class _HeapClock:
    """Timers kept in a heap; the subclasses say what time it is."""

    #: Rebuild the heap once at least this many cancelled timers make up half of it.
    COMPACT_AT = 64

    def __init__(self) -> None:
        self._heap: list[_Timer] = []
        self._seq = itertools.count()
        self._cancelled = 0

    def now(self) -> float:
        raise NotImplementedError

    def call_at(self, when: float, callback: Callable[[], object]) -> _Timer:
        timer = _Timer(when, next(self._seq), callback, self)
        heapq.heappush(self._heap, timer)
        return timer

    def _cancelled_one(self) -> None:
        self._cancelled += 1
        heap = self._heap
        if self._cancelled >= self.COMPACT_AT and 2 * self._cancelled > len(heap):
            for t in heap:
                if t.cancelled:
                    t.clock = None
            heap[:] = [t for t in heap if not t.cancelled]
            heapq.heapify(heap)
            self._cancelled = 0

    def _pop(self) -> _Timer:
        timer = heapq.heappop(self._heap)
        timer.clock = None
        if timer.cancelled:
            self._cancelled -= 1
        return timer

    def next_due(self) -> float | None:
        """When the earliest live timer is due, or None."""
        heap = self._heap
        while heap and heap[0].cancelled:
            self._pop()
        return heap[0].when if heap else None

    def _pop_due(self, until: float) -> _Timer | None:
        due = self.next_due()
        if due is None or due > until:
            return None
        return self._pop()

    def pending_timers(self) -> int:
        """Timers waiting in the heap, cancelled ones not counted."""
        return len(self._heap) - self._cancelled


class VirtualClock(_HeapClock):
    """Deterministic time for tests: delayed events fire on :meth:`advance`.

    Several sessions (a parent and the sessions it invokes) may share one
    virtual clock; advancing it fires every session's due timers in order.
    """

    def __init__(self, start: float = 0.0) -> None:
        super().__init__()
        self._now = float(start)
        # Set when a timer is scheduled for a time already reached; time only
        # moves in advance_to(), which runs everything due before it returns.
        self._due_now = False

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], object]) -> _Timer:
        if when <= self._now:
            self._due_now = True
        return super().call_at(when, callback)

    def advance(self, seconds: float) -> None:
        """Move time forward, running each timer at its own due time in order."""
        if seconds < 0:
            raise ValueError("a clock cannot go back")
        self.advance_to(self._now + seconds)

    def advance_to(self, when: float) -> None:
        """Move time to ``when`` (never backwards), running due timers in order."""
        while True:
            timer = self._pop_due(when)
            if timer is None:
                break
            self._now = max(self._now, timer.when)
            if timer.callback is not None:
                timer.callback()
        self._now = max(self._now, when)
        self._due_now = False

    def run_until(self, deadline: float, stop: Callable[[], bool] = _never) -> None:
        """Jump from timer to timer up to ``deadline`` while ``stop()`` is false.

        Time stops at the last timer run, not at ``deadline``.
        """
        while not stop():
            due = self.next_due()
            if due is None or due > deadline:
                return
            self.advance_to(due)

    def settle(self, checked_at: float) -> None:
        """Run the timers scheduled for a time already reached (``checked_at`` is not needed)."""
        if self._due_now:
            self.advance_to(self._now)


class RealClock(_HeapClock):
    """The monotonic clock; due timers run while the owner waits in :meth:`run_until`."""

    #: ``now()`` reads CLOCK_MONOTONIC, so the core may read it directly.
    is_monotonic = True

    def __init__(self) -> None:
        super().__init__()
        # A lower bound of the earliest timer (cancelling does not raise it), so
        # that "is anything due at t?" costs one comparison in the common case.
        self.earliest = math.inf

    def now(self) -> float:
        return time.monotonic()

    def call_at(self, when: float, callback: Callable[[], object]) -> _Timer:
        """Run ``callback`` once ``when`` has come, while the owner waits or settles."""
        if when < self.earliest:
            self.earliest = when
        return super().call_at(when, callback)

    def run_due(self) -> None:
        """Run every timer that is due now."""
        while True:
            timer = self._pop_due(self.now())
            if timer is None:
                return
            if timer.callback is not None:
                timer.callback()

    def settle(self, checked_at: float) -> None:
        """Run the timers due at ``checked_at``; one comparison when none can be."""
        if self.earliest > checked_at:
            return
        due = self.next_due()
        self.earliest = math.inf if due is None else due
        if due is not None and due <= checked_at:
            self.run_due()

    def advance(self, seconds: float) -> None:
        """Wait ``seconds``, running the timers as they fall due."""
        self.run_until(self.now() + seconds)

    def run_until(
        self, deadline: float, stop: Callable[[], bool] = _never, *, wait: Callable[[float], object] = time.sleep
    ) -> None:
        """Sleep from timer to timer until ``deadline`` or until ``stop()`` is true.

        ``wait(seconds)`` does the sleeping: a transport passes one that returns
        early and hands over the events that arrived, so that they are not held
        until the next timer.
        """
        while not stop():
            self.run_due()
            if stop():
                return
            due = self.next_due()
            now = self.now()
            if now >= deadline:
                return
            wake = deadline if due is None else min(due, deadline)
            wait(max(0.0, wake - now))


class AsyncioClock:
    """Real time on an asyncio loop: timers are ``loop.call_at`` callbacks."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop given, else the running one (taken at first use)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def now(self) -> float:
        """The loop's time."""
        return self.loop.time()

    def call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        """``loop.call_at``: the callback runs on the loop while the session is idle."""
        return self.loop.call_at(when, callback)

    def advance(self, seconds: float) -> None:
        """Refused: time passes on the event loop."""
        raise TypeError(_LOOP_TIME.format("advance()"))

    def run_until(self, deadline: float, stop: Callable[[], bool] = _never) -> None:
        """Refused: the event loop runs the timers."""
        raise TypeError(_LOOP_TIME.format("run()"))

    def settle(self, checked_at: float) -> None:
        """Nothing to do: the event loop runs what is due as soon as the caller returns to it."""


_LOOP_TIME = (
    "{} needs a VirtualClock or the default real clock: on an AsyncioClock time passes and timers "
    "run while the asyncio loop runs (await asyncio.sleep(...))"
)
