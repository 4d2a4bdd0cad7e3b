"""The media clock: one per process (instantiated and passed in), ticking every 20 ms on absolute deadlines.

Tick n is due at t0 + n·interval, so there is no drift however long it runs. Sources are spread over
`phases` sub-slots of the interval (500 calls become 4 bursts of 125, 5 ms apart, not one of 500), and each
source is pulled once per interval. If the event loop wakes late the clock catches up by running the missed
ticks at once, up to `max_catchup`; beyond that it skips them, and every source's RTP timestamp still advances
with the tick number, so the far end sees a gap in time, not a burst of stale audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from dataclasses import dataclass
from typing import Protocol

from .._logger import get_logger

__all__ = ["ClockStatistics", "ClockedSource", "MediaClock", "TickSchedule"]


class ClockedSource(Protocol):
    """What the clock drives: `on_tick(tick)` sends at most one packet and never blocks."""

    def on_tick(self, tick: int) -> None: ...


@dataclass(slots=True)
class ClockStatistics:
    """How the clock kept time: slots run on time, caught up late, or skipped."""

    slots: int = 0
    late_slots: int = 0
    skipped_slots: int = 0
    max_lateness: float = 0.0
    source_errors: int = 0


class TickSchedule:
    """Sans-I/O absolute-deadline scheduling: which slots are due at `now`, and when the next one is."""

    def __init__(self, start: float, slot_duration: float, *, max_catchup: int = 3) -> None:
        self.start = start
        self.slot_duration = slot_duration
        self.max_catchup = max_catchup
        self.next_slot = 0
        self.stats = ClockStatistics()

    @property
    def next_deadline(self) -> float:
        """When the next slot is due."""
        return self.start + self.next_slot * self.slot_duration

    def due(self, now: float) -> range:
        """Slots to run now, in order; late ones beyond `max_catchup` are skipped and counted."""
        if now < self.next_deadline:
            return range(0)
        last = int((now - self.start) / self.slot_duration)
        last = max(last, self.next_slot)  # float rounding must never lose the slot we were woken for
        lateness = now - self.next_deadline
        self.stats.max_lateness = max(self.stats.max_lateness, lateness)
        first = self.next_slot
        missed = last - first
        if missed > self.max_catchup:
            self.stats.skipped_slots += missed - self.max_catchup
            first = last - self.max_catchup
        self.stats.late_slots += last - first
        self.stats.slots += last - first + 1
        self.next_slot = last + 1
        return range(first, last + 1)


class MediaClock:
    """Pulls one frame per `interval` from every registered source; start with `async with` or `start()`."""

    def __init__(self, *, interval: float = 0.020, phases: int = 4, max_catchup: int = 3) -> None:
        if phases < 1:
            raise ValueError("phases must be at least 1")
        self.interval = interval
        self.phases = phases
        self.max_catchup = max_catchup
        self._phase_sources: list[list[ClockedSource]] = [[] for _ in range(phases)]
        self._phase_of: dict[int, int] = {}
        self._schedule: TickSchedule | None = None
        self._next_deadline = math.inf  # when poll() has work: the next slot's deadline while running
        self.slot_deadline = 0.0
        self._task: asyncio.Task[None] | None = None
        self._log = get_logger("voicelive_sip.media.clock")

    @property
    def stats(self) -> ClockStatistics:
        """Slots run, late, skipped, and the worst lateness seen (seconds)."""
        return self._schedule.stats if self._schedule is not None else ClockStatistics()

    @property
    def tick(self) -> int:
        """The index of the next tick (20 ms each) the clock will run."""
        return self._schedule.next_slot // self.phases if self._schedule is not None else 0

    def __len__(self) -> int:
        return len(self._phase_of)

    def __bool__(self) -> bool:
        # A clock with no sessions is still a clock: `clock or MediaClock()` must not replace an idle one.
        return True

    def add(self, source: ClockedSource) -> None:
        """Start pulling from `source` (in the least busy phase)."""
        if id(source) in self._phase_of:
            return
        phase = min(range(self.phases), key=lambda p: len(self._phase_sources[p]))
        self._phase_sources[phase].append(source)
        self._phase_of[id(source)] = phase

    def remove(self, source: ClockedSource) -> None:
        """Stop pulling from `source`; unknown sources are ignored."""
        phase = self._phase_of.pop(id(source), None)
        if phase is not None:
            # Copy-on-write: a tick iterating the old list is not disturbed.
            self._phase_sources[phase] = [s for s in self._phase_sources[phase] if s is not source]

    def start(self) -> None:
        """Start ticking on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="media-clock")

    async def stop(self) -> None:
        """Stop ticking and wait for the clock task to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> MediaClock:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def run_slot(self, slot: int) -> None:
        """Run one phase slot: every source of phase `slot % phases` gets tick `slot // phases`."""
        tick, phase = divmod(slot, self.phases)
        if self._schedule is not None:
            # When this slot should have run: audio queued earlier goes out then, unless the clock is late.
            self.slot_deadline = self._schedule.start + slot * self._schedule.slot_duration
        for source in self._phase_sources[phase]:
            try:
                source.on_tick(tick)
            except Exception:
                # One broken call must not silence the others.
                if self._schedule is not None:
                    self._schedule.stats.source_errors += 1
                self._log.exception("media.tick_failed", tick=tick)

    def poll(self, now: float) -> None:
        """Run whatever slot is due at loop time `now`, if any; cheap when none is.

        The clock's own timer fires only between event-loop iterations, and under load one iteration can
        spend milliseconds on the sockets that became ready together. Called from the RTP receive path
        (hundreds of times per 20 ms at high load), this lets a due slot go out in the middle of such an
        iteration instead of after it.
        """
        if now >= self._next_deadline:
            self._run_due(now)

    def _run_due(self, now: float) -> None:
        schedule = self._schedule
        if schedule is None:
            return
        for slot in schedule.due(now):
            self.run_slot(slot)
        self._next_deadline = schedule.next_deadline

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        schedule = TickSchedule(
            loop.time(), self.interval / self.phases, max_catchup=self.max_catchup * self.phases
        )
        self._schedule = schedule
        self._next_deadline = schedule.next_deadline
        self._log.info("media.clock_started", interval_ms=self.interval * 1000, phases=self.phases)
        try:
            while True:
                # sleep(0) still yields: a clock that is always late must not starve the event loop.
                await asyncio.sleep(max(0.0, schedule.next_deadline - loop.time()))
                self._run_due(loop.time())
        finally:
            self._next_deadline = math.inf  # stopped: poll() does nothing
