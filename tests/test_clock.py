"""Session clocks: virtual time for tests, real time for synchronous and asyncio hosts."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import pytest

from orsguard import AsyncioClock, Limits, RealClock, Session, Stats, VirtualClock, load
from tests.conftest import NS, delayed

DELAYED = delayed("20ms", "done", final=True)

IDLE = load(f'<scxml {NS}><state id="a"/></scxml>')


def test_virtual_timers_run_in_time_order_and_fifo_at_equal_times():
    clock = VirtualClock()
    seen: list[tuple[str, float]] = []
    for name, when in (("c", 3.0), ("a", 1.0), ("b1", 2.0), ("b2", 2.0)):
        clock.call_at(when, lambda name=name: seen.append((name, clock.now())))
    cancelled = clock.call_at(1.5, lambda: seen.append(("x", clock.now())))
    cancelled.cancel()
    clock.advance(2.5)
    assert seen == [("a", 1.0), ("b1", 2.0), ("b2", 2.0)]
    assert clock.now() == 2.5
    assert clock.next_due() == 3.0


def test_a_virtual_clock_never_goes_back():
    clock = VirtualClock(start=10.0)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)
    clock.advance_to(5.0)
    assert clock.now() == 10.0


def test_real_clock_run_waits_for_the_delayed_event():
    session = Session(DELAYED, stats=Stats())
    session.start()
    assert session.running
    session.run(5)
    assert session.final == "done"


def test_real_clock_stops_waiting_when_told():
    clock = RealClock()
    fired: list[int] = []
    clock.call_at(clock.now() + 0.01, lambda: fired.append(1))
    clock.call_at(clock.now() + 60, lambda: fired.append(2))
    clock.run_until(clock.now() + 60, stop=lambda: bool(fired))
    assert fired == [1]


def test_session_age_on_a_real_clock_used_synchronously():
    # No timer is serviced between calls here; the next event finds the session too old.
    session = Session(IDLE, limits=Limits.unlimited().replace(max_session_age=0.01), stats=Stats())
    session.start()
    time.sleep(0.02)
    session.send("anything")
    assert session.termination is not None
    assert session.termination.option == "max-session-age"


def test_asyncio_clock_fires_delays_and_age_while_idle():
    async def main() -> tuple[Session, Session]:
        clock = AsyncioClock()
        delayed = Session(DELAYED, clock=clock, stats=Stats())
        idle = Session(IDLE, clock=clock, limits=Limits.unlimited().replace(max_session_age=0.02), stats=Stats())
        delayed.start()
        idle.start()
        for _ in range(200):
            if not delayed.running and not idle.running:
                break
            await asyncio.sleep(0.01)
        return delayed, idle

    delayed, idle = asyncio.run(main())
    assert delayed.final == "done"
    assert idle.termination is not None and idle.termination.option == "max-session-age"


def test_a_cancelled_timer_lets_go_of_its_callback():
    class Owner:
        pass

    clock = VirtualClock()
    owner = [Owner()]
    ref = weakref.ref(owner[0])
    timer = clock.call_at(86400, lambda o=owner[0]: o)
    del owner[0]
    assert ref() is not None
    timer.cancel()
    assert ref() is None
    assert clock.pending_timers() == 0
    clock.advance(86400)  # the cancelled entry still in the heap does not fire


def test_ended_sessions_are_not_kept_alive_by_their_age_timers():
    # Each session arms a max-session-age timer a day ahead; ending it cancels the
    # timer. Neither the timer nor the heap entry may keep the session alive.
    clock = VirtualClock()
    refs = []
    for _ in range(200):
        session = Session(IDLE, clock=clock, limits=Limits.unlimited().replace(max_session_age=86400), stats=Stats())
        session.start()
        session.cancel()
        refs.append(weakref.ref(session))
        del session
    gc.collect()
    assert [r for r in refs if r() is not None] == []
    assert clock.pending_timers() == 0
    assert len(clock._heap) < 200  # cancelled entries are compacted away, not kept until they fall due


def test_compacting_the_heap_keeps_live_timers_in_order():
    clock = VirtualClock()
    fired: list[int] = []
    timers = [clock.call_at(float(i), lambda i=i: fired.append(i)) for i in range(300)]
    for i, t in enumerate(timers):
        if i % 3:
            t.cancel()
    clock.advance(400)
    assert fired == list(range(0, 300, 3))


def test_virtual_run_until_jumps_from_timer_to_timer_and_stops_at_the_last():
    clock = VirtualClock()
    seen: list[float] = []
    for when in (1.0, 2.0, 9.0):
        clock.call_at(when, lambda: seen.append(clock.now()))
    clock.run_until(5.0)
    assert seen == [1.0, 2.0]
    assert clock.now() == 2.0
    clock.run_until(50.0, stop=lambda: True)
    assert seen == [1.0, 2.0]


def test_virtual_settle_runs_only_what_is_due_already():
    clock = VirtualClock(start=3.0)
    seen: list[str] = []
    clock.call_at(4.0, lambda: seen.append("later"))
    clock.settle(0.0)
    assert seen == []
    clock.call_at(3.0, lambda: seen.append("now"))
    clock.settle(0.0)
    assert seen == ["now"]
    assert clock.now() == 3.0


def test_real_clock_advance_and_settle():
    clock = RealClock()
    seen: list[str] = []
    start = clock.now()
    clock.call_at(start + 0.01, lambda: seen.append("soon"))
    clock.call_at(start + 60, lambda: seen.append("late"))
    clock.settle(start)
    assert seen == []
    clock.advance(0.05)
    assert seen == ["soon"]
    assert clock.now() >= start + 0.05
    clock.call_at(clock.now(), lambda: seen.append("due"))
    clock.settle(clock.now())
    assert seen == ["soon", "due"]


def test_real_clock_run_until_sleeps_through_the_wait_it_is_given():
    clock = RealClock()
    fired: list[int] = []
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        fired.append(len(waits))  # what a transport does: an event arrives while waiting

    clock.run_until(clock.now() + 60, stop=lambda: len(fired) >= 2, wait=wait)
    assert len(waits) == 2
    assert all(0 < w <= 60 for w in waits)


def test_an_asyncio_clock_refuses_advance_and_run_clearly():
    async def main() -> None:
        session = Session(IDLE, clock=AsyncioClock(), stats=Stats())
        session.start()
        with pytest.raises(TypeError, match=r"advance\(\) needs a VirtualClock"):
            session.advance(1)
        with pytest.raises(TypeError, match=r"run\(\) needs a VirtualClock"):
            session.run(1)
        assert session.running
        session.cancel()

    asyncio.run(main())


def test_a_clock_without_the_protocol_is_refused_at_once():
    class Bare:
        def now(self) -> float:
            return 0.0

        def call_at(self, when: float, callback: object) -> object:
            return None

    with pytest.raises(TypeError, match="Bare has no advance, run_until, settle"):
        Session(IDLE, clock=Bare(), stats=Stats())  # type: ignore[arg-type]
