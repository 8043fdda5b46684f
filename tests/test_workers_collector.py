"""The ``--workers N`` supervisor's collector: workers read at once, their pages merged."""

from __future__ import annotations

import socket
import threading

from orsguard.host.workers import WorkersCollector

PAGE = """\
# HELP orsguard_sessions_active Sessions running now.
# TYPE orsguard_sessions_active gauge
orsguard_sessions_active {active}
# HELP orsguard_limit The limit in force.
# TYPE orsguard_limit gauge
orsguard_limit{{option="max-microstep-count"}} {limit}
# HELP orsguard_events Events.
# TYPE orsguard_events counter
orsguard_events_total {events}
orsguard_events_created {created}
"""


class Pages(WorkersCollector):
    """Serves each port's page from a dict instead of HTTP; None: the worker did not answer."""

    def __init__(self, pages: dict[int, str | None], barrier: threading.Barrier | None = None) -> None:
        super().__init__(list(pages))
        self.pages = pages
        self.barrier = barrier

    def _fetch(self, port: int) -> str | None:
        if self.barrier is not None:
            # Every worker's read must be under way before any returns.
            self.barrier.wait()
        return self.pages[port]


def samples(collector: WorkersCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value for family in collector.collect() for s in family.samples
    }


def page(active: int, limit: int, events: int, created: float) -> str:
    return PAGE.format(active=active, limit=limit, events=events, created=created)


def test_workers_are_read_at_the_same_time() -> None:
    pages: dict[int, str | None] = {port: page(1, 100, 2, 10.0) for port in (1, 2, 3, 4)}
    # A read waits for the other three: reading one worker after another breaks the barrier.
    got = samples(Pages(pages, threading.Barrier(4, timeout=30)))
    assert got[("orsguard_workers_up", ())] == 4
    assert got[("orsguard_sessions_active", ())] == 4


def test_pages_merge_by_sum_limits_by_largest_creation_by_earliest() -> None:
    got = samples(Pages({1: page(3, 100, 5, 20.0), 2: page(4, 250, 7, 10.0)}))
    assert got[("orsguard_workers_up", ())] == 2
    assert got[("orsguard_sessions_active", ())] == 7
    assert got[("orsguard_limit", (("option", "max-microstep-count"),))] == 250
    assert got[("orsguard_events_total", ())] == 12
    assert got[("orsguard_events_created", ())] == 10.0


def test_a_silent_or_garbled_worker_is_left_out_and_not_counted_up() -> None:
    good = page(2, 100, 1, 5.0)
    garbled = good.replace("orsguard_sessions_active 2", "orsguard_sessions_active two")
    got = samples(Pages({1: good, 2: None, 3: garbled}))
    assert got[("orsguard_workers_up", ())] == 1
    assert got[("orsguard_sessions_active", ())] == 2


def test_a_worker_that_accepts_but_never_answers_is_a_worker_not_up() -> None:
    with socket.socket() as silent, socket.socket() as closed:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the connection is made; no answer ever comes
        closed.bind(("127.0.0.1", 0))  # bound, not listening: refused
        ports = [silent.getsockname()[1], closed.getsockname()[1]]
        collector = WorkersCollector(ports, timeout=0.2)
        got = samples(collector)
    assert got == {("orsguard_workers_up", ()): 0}
