"""Per-turn latency: the end of the caller's speech to the first agent audio on the wire, in its parts.

Sans-I/O: the bridge feeds it loop times (speech end mapped from the service's audio position, audio delta
received, frame sent, tool run) and gets a `TurnLatency` per answered turn.
"""

from __future__ import annotations

from typing import Final

from .call_events import TurnLatency

__all__ = ["TurnLatency", "TurnTimer", "percentile"]

MAX_TURNS: Final = 500  # a call's turns kept in its summary, oldest dropped first


class TurnTimer:
    """Times the turns of one call. A turn opens at the caller's speech end and closes at the agent's
    first audio frame sent; a new speech end before that replaces it (the caller went on talking)."""

    def __init__(self) -> None:
        self.turns: list[TurnLatency] = []
        self._end: float | None = None
        self._delta: float | None = None
        self._tool_s = 0.0
        self._tools: list[str] = []
        # A turn's first agent audio was received and not yet sent: a plain attribute, read per frame sent.
        self.waiting = False

    def speech_stopped(self, end: float) -> None:
        """The caller stopped speaking at loop time `end`: a turn starts."""
        self._end, self._delta, self._tool_s, self._tools = end, None, 0.0, []
        self.waiting = False

    def tool_ran(self, name: str, seconds: float) -> None:
        """A tool the model called during the open turn ran for `seconds`."""
        if self._end is not None and self._delta is None:
            self._tool_s += max(0.0, seconds)
            self._tools.append(name)

    def audio_received(self, received_at: float) -> None:
        """Agent audio of a reply that will play arrived (the first one after the speech end counts)."""
        if self._end is not None and self._delta is None and received_at >= self._end:
            self._delta = received_at
            self.waiting = True

    def audio_sent(self, now: float, answered_at: float) -> TurnLatency | None:
        """A frame of agent audio went out at `now`: closes a waiting turn and returns it."""
        end, delta = self._end, self._delta
        if end is None or delta is None:
            return None
        self._end = self._delta = None
        self.waiting = False
        tool_ms = self._tool_s * 1000
        turn = TurnLatency(
            at=round(end - answered_at, 3),
            total_ms=round((now - end) * 1000, 1),
            service_ms=round(max(0.0, (delta - end) * 1000 - tool_ms), 1),
            gateway_ms=round((now - delta) * 1000, 1),
            tool_ms=round(tool_ms, 1),
            tools=tuple(self._tools),
        )
        self.turns.append(turn)
        del self.turns[:-MAX_TURNS]
        return turn


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (`share` 0..1) of `values`; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))  # ceil(n * share), at least the first
    return ordered[int(rank) - 1]
