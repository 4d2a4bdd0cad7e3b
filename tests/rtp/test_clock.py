"""The media clock: absolute deadlines (fake time), catch-up and skip, phases, a real run on the loop."""

from __future__ import annotations

import asyncio

import pytest

from voicelive_sip.rtp.clock import MediaClock, TickSchedule


def test_deadlines_are_absolute_and_do_not_drift() -> None:
    schedule = TickSchedule(100.0, 0.02)
    ran: list[int] = []
    # Wake up a little late every time for three simulated hours: slot n stays due at t0 + n·20 ms.
    for _n in range(540_000):
        now = schedule.next_deadline + 0.0004
        ran.extend(schedule.due(now))
    assert ran == list(range(540_000))
    assert schedule.next_deadline == pytest.approx(100.0 + 540_000 * 0.02)
    assert schedule.stats.late_slots == schedule.stats.skipped_slots == 0


def test_nothing_is_due_early() -> None:
    schedule = TickSchedule(0.0, 0.02)
    assert list(schedule.due(0.0)) == [0]
    assert list(schedule.due(0.019)) == []
    assert list(schedule.due(0.02)) == [1]


def test_late_wakeup_catches_up_then_skips() -> None:
    schedule = TickSchedule(0.0, 0.02, max_catchup=3)
    assert list(schedule.due(0.0)) == [0]
    assert list(schedule.due(0.065)) == [1, 2, 3]  # 45 ms late: two missed slots run at once
    assert schedule.stats.late_slots == 2
    assert list(schedule.due(0.5)) == [22, 23, 24, 25]  # far behind: keep the last 3+1, skip the rest
    assert schedule.stats.skipped_slots == 25 - 4 - 3
    assert schedule.next_deadline == pytest.approx(0.52)


class _Source:
    def __init__(self) -> None:
        self.ticks: list[int] = []

    def on_tick(self, tick: int) -> None:
        self.ticks.append(tick)


class _Broken:
    def on_tick(self, tick: int) -> None:
        raise RuntimeError("boom")


def test_phases_spread_sources_and_each_gets_every_tick() -> None:
    clock = MediaClock(phases=4)
    sources = [_Source() for _ in range(8)]
    for source in sources:
        clock.add(source)
    for slot in range(4 * 5):
        clock.run_slot(slot)
    assert all(source.ticks == [0, 1, 2, 3, 4] for source in sources)
    clock.remove(sources[0])
    clock.run_slot(20)
    assert sources[0].ticks == [0, 1, 2, 3, 4] and len(clock) == 7


def test_a_failing_source_does_not_stop_the_others() -> None:
    clock = MediaClock(phases=1)
    good = _Source()
    clock.add(_Broken())
    clock.add(good)
    clock.run_slot(0)
    assert good.ticks == [0]


async def test_runs_on_the_event_loop_and_stops_cleanly() -> None:
    source = _Source()
    async with MediaClock() as clock:
        clock.add(source)
        while len(source.ticks) < 5:
            await asyncio.sleep(0.02)
    count = len(source.ticks)
    await asyncio.sleep(0.05)
    assert len(source.ticks) == count
    assert source.ticks == sorted(set(source.ticks))  # in order, never twice (a stalled loop may skip)


async def test_poll_runs_a_due_slot_inside_a_busy_loop_iteration_and_only_once() -> None:
    loop = asyncio.get_running_loop()
    source = _Source()
    clock = MediaClock(phases=1)
    clock.poll(loop.time() + 1.0)  # not started: nothing to run
    async with clock:
        clock.add(source)
        while not source.ticks:
            await asyncio.sleep(0.001)
        before = len(source.ticks)
        # The event loop is busy (no await) for more than two intervals: only poll() can run what falls due.
        busy_until = loop.time() + 0.050
        while loop.time() < busy_until:
            clock.poll(loop.time())
        assert len(source.ticks) > before
        await asyncio.sleep(0.005)  # the clock's own wake-up finds those ticks done
        await asyncio.sleep(0.030)
    assert source.ticks == sorted(set(source.ticks))  # in order, none twice
    ended = len(source.ticks)
    clock.poll(loop.time() + 1.0)  # stopped: nothing runs
    assert len(source.ticks) == ended
