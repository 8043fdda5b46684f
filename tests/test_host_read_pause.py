"""The paced event loop of the session host: sockets wait out the pause, timers do not."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from orsguard.host.connection import PacedSelector, run_paced


def test_a_pause_of_zero_is_the_plain_loop_and_the_policy_is_restored() -> None:
    async def selector() -> Any:
        return getattr(asyncio.get_running_loop(), "_selector", None)

    policy = asyncio.get_event_loop_policy()
    assert not isinstance(run_paced(selector(), 0), PacedSelector)
    assert isinstance(run_paced(selector(), 0.01), PacedSelector)
    assert asyncio.get_event_loop_policy() is policy


def test_sockets_wait_out_the_pause_while_timers_and_callbacks_run_on_time() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        near, far = socket.socketpair()
        near.setblocking(False)
        reads: list[tuple[bytes, float]] = []
        events: dict[str, float] = {}
        done = loop.create_future()

        def readable() -> None:
            reads.append((near.recv(100), loop.time()))
            if len(reads) == 1:
                # Arrives at once, but is read only after the pause.
                far.send(b"2")
                loop.call_later(0.05, lambda: events.setdefault("timer", loop.time()))
                loop.call_soon(lambda: events.setdefault("soon", loop.time()))
            elif not done.done():
                done.set_result(None)

        loop.add_reader(near.fileno(), readable)
        try:
            await asyncio.sleep(0.05)  # a quiet spell: the first byte is read at once
            sent = loop.time()
            far.send(b"1")
            await asyncio.wait_for(done, 5)
        finally:
            loop.remove_reader(near.fileno())
            near.close()
            far.close()
        (first, t1), (second, t2) = reads
        assert (first, second) == (b"1", b"2")
        # Bounds well inside the pause, for a busy machine.
        assert t1 - sent < 0.25
        assert t2 - t1 >= 0.5
        assert events["soon"] - t1 < 0.25
        assert 0.04 <= events["timer"] - t1 < 0.3

    run_paced(scenario(), 0.5)
