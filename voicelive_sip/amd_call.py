"""AMD on a live call: the callee's G.711 decoded into the detector, and the uplink held while it listens.

The session (`CallSession`) reacts to the detector's events; this class only decides, frame by frame, whether
the callee's audio may reach Voice Live and whether the agent's audio may reach the callee.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from .amd import AmdEvent, AmdPolicy, AnsweringMachineDetector
from .codecs import g711
from .codecs.names import Codec
from .codecs.resample import Resampler

__all__ = ["CallAmd"]

Phase = Literal["listening", "machine", "message", "done"]


class CallAmd:
    """The detector of one call, its phase, and the callee frames held back from Voice Live till a verdict."""

    def __init__(self, policy: AmdPolicy, codec: Codec, now: float) -> None:
        self.policy = policy
        self.detector = AnsweringMachineDetector(policy.parameters, now=now)
        self.phase: Phase = "listening"
        self._law = codec.law
        # The detector is tuned on 8 kHz telephone audio: a wideband callee is resampled down to it.
        self._down = None if codec.law is not None else Resampler(codec.sample_rate, 8000, quality="QQ")
        # A person's first words ("Hello?") reach the model after the verdict: at most the analysis time.
        frames = policy.parameters.total_analysis_time // 20 + 10
        self._held: deque[bytes] = deque(maxlen=frames)

    @property
    def mutes_agent(self) -> bool:
        """No agent audio for the callee: AMD listens (holding), or a machine's greeting still plays."""
        return (self.phase == "listening" and self.policy.hold_agent_audio) or self.phase == "machine"

    def caller_frame(self, payload: bytes, now: float) -> bool:
        """Analyse one callee frame; True if it must not go to Voice Live (held for later, or dropped)."""
        if not self.detector.done:
            law = self._law
            if law is not None:
                self.detector.receive_audio(g711.decode(law, payload), now)
            elif self._down is not None:
                self.detector.receive_audio(self._down.process(payload), now)
        if self.phase == "listening" and self.policy.hold_agent_audio:
            self._held.append(payload)
            return True
        # A machine's greeting and beep are no conversation: the model never hears them.
        return self.phase in ("machine", "message")

    def release(self) -> list[bytes]:
        """The held frames, in order, for Voice Live (a person answered); the hold ends."""
        frames = list(self._held)
        self._held.clear()
        return frames

    def next_event(self) -> AmdEvent | None:
        return self.detector.next_event()

    def get_timer(self) -> float | None:
        return self.detector.get_timer()

    def handle_timer(self, now: float) -> None:
        self.detector.handle_timer(now)
