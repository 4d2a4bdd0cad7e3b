"""Answering-machine detection: Asterisk app_amd's word/silence state machine plus a beep detector, sans-I/O.

The detector never reads a clock or a socket: decoded 8 kHz audio and the time go in (`receive_audio`,
`handle_timer`), events come out (`next_event`): one `AmdVerdict` (HUMAN, MACHINE or NOTSURE with app_amd's
cause), then, for a machine, `BeepDetected` and `GreetingEnded` (the moment to leave a message).
Time inside the analysis is audio time (samples / 8), as in app_amd; `now` only measures gaps in the audio
(no RTP arriving is silence, as app_amd counts NULL and CNG frames).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "AmdEvent",
    "AmdParameters",
    "AmdPolicy",
    "AmdVerdict",
    "AnsweringMachineDetector",
    "BeepDetected",
    "GreetingEnded",
]

SAMPLE_RATE = 8000
BLOCK = 160  # 20 ms: app_amd judges whole frames, and 20 ms is what the RTP leg delivers
BLOCK_MS = BLOCK * 1000 // SAMPLE_RATE
# The beep detector looks at the last 40 ms (two blocks): its Hann main lobe is then +-50 Hz wide, narrower
# than the spacing of voice harmonics (F0 >= 80 Hz), so one harmonic of a vowel cannot pass for a pure tone.
WINDOW = 2 * BLOCK
FFT_SIZE = 1024
BEEP_BAND = (400.0, 2000.0)
BEEP_LOBE_HZ = 50.0
BEEP_DRIFT_HZ = 30.0  # a beep holds its pitch; a sung or gliding vowel does not
MAX_GAP = 0.1  # s without audio counted as silence on a timer (app_amd: NULL frames of 2 x the frame wait)

Status = Literal["HUMAN", "MACHINE", "NOTSURE"]


@dataclass(frozen=True, slots=True)
class AmdParameters:
    """app_amd's amd.conf, in milliseconds (defaults as Asterisk ships them), and the beep detector's."""

    initial_silence: int = 2500  # silence before any speech longer than this: MACHINE (INITIALSILENCE)
    greeting: int = 1500  # speech in the greeting longer than this: MACHINE (LONGGREETING)
    after_greeting_silence: int = 800  # silence after the greeting this long: HUMAN
    total_analysis_time: int = 5000  # no decision by then: NOTSURE (TOOLONG)
    min_word_length: int = 100  # speech this long is a word
    between_words_silence: int = 50  # silence this long ends a word
    maximum_number_of_words: int = 2  # more words than this: MACHINE (MAXWORDS)
    maximum_word_length: int = 5000  # one word this long: MACHINE (MAXWORDLENGTH)
    silence_threshold: int = 256  # mean absolute sample value (of 32767) below which a frame is silence
    beep_min_length: int = 120  # a pure tone in 400-2000 Hz at least this long is a beep
    beep_tonality: float = 0.8  # share of a frame's energy within +-50 Hz of its peak for a tone
    greeting_end_silence: int = 1500  # a machine's greeting is over after this much silence (no beep)
    max_greeting_wait: int = 30_000  # leave the message by then, beep or not (from the start of the call)


@dataclass(frozen=True, slots=True)
class AmdPolicy:
    """AMD on one call: how to detect, and what to do about a machine (a person always gets the agent).

    `machine_action` voicemail needs `voicemail_message` (said word for word) or `voicemail_instructions`
    (the model composes it); with neither, a machine is hung up on. `hold_agent_audio`: the agent stays
    silent and deaf until the verdict.
    """

    parameters: AmdParameters = AmdParameters()
    machine_action: Literal["hangup", "voicemail"] = "hangup"
    voicemail_message: str = ""
    voicemail_instructions: str = ""
    hold_agent_audio: bool = True

    @property
    def leaves_message(self) -> bool:
        return self.machine_action == "voicemail" and bool(
            self.voicemail_message or self.voicemail_instructions
        )


@dataclass(frozen=True, slots=True)
class AmdVerdict:
    """Who answered: `status` HUMAN, MACHINE or NOTSURE; `cause` as app_amd's AMDCAUSE; `at_ms` audio time."""

    status: Status
    cause: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class BeepDetected:
    """A voicemail beep: a steady tone of `frequency` Hz that ended at `at_ms` after `length_ms`."""

    at_ms: int
    frequency: float
    length_ms: int


@dataclass(frozen=True, slots=True)
class GreetingEnded:
    """A machine's greeting is over: `cause` beep, silence or timeout; record the message now."""

    at_ms: int
    cause: Literal["beep", "silence", "timeout"]


AmdEvent = AmdVerdict | BeepDetected | GreetingEnded


class AnsweringMachineDetector:
    """Listens to the first seconds of an answered call; see the module docstring for the protocol."""

    def __init__(self, parameters: AmdParameters | None = None, *, now: float = 0.0) -> None:
        self.parameters = parameters or AmdParameters()
        self.verdict: AmdVerdict | None = None
        self.done = False  # nothing more to detect: a HUMAN or NOTSURE verdict, or a machine's greeting over
        self._events: deque[AmdEvent] = deque(maxlen=8)
        self._pending = np.zeros(0, dtype=np.int16)
        self._previous = np.zeros(BLOCK, dtype=np.float64)
        self._last_audio = now
        self._total_ms = 0
        # app_amd's state: it starts "in a word", so the first word counts only after some silence.
        self._silence_ms = 0
        self._voice_ms = 0
        self._consecutive_voice_ms = 0
        self._words = 0
        self._in_word = True
        self._in_initial_silence = True
        self._in_greeting = False
        self._silence_since_verdict = 0
        self._tone_ms = 0
        self._tone_hz = 0.0
        freqs = np.fft.rfftfreq(FFT_SIZE, 1 / SAMPLE_RATE)
        self._band = (freqs >= BEEP_BAND[0]) & (freqs <= BEEP_BAND[1])
        self._freqs = freqs
        self._hann = np.hanning(WINDOW)

    # -- input ---------------------------------------------------------------------------------------------
    def receive_audio(self, pcm: npt.NDArray[np.int16], now: float) -> None:
        """Feed decoded callee audio (int16, 8 kHz), received at `now` (seconds, any monotonic clock)."""
        self._last_audio = now
        if self.done:
            return
        data = np.concatenate((self._pending, pcm)) if self._pending.size else pcm
        whole = len(data) - len(data) % BLOCK
        for start in range(0, whole, BLOCK):
            if self._block(data[start : start + BLOCK].astype(np.float64)):
                break
        self._pending = np.array(data[whole:], dtype=np.int16)

    def handle_timer(self, now: float) -> None:
        """No audio since the last call: the gap counts as silence (whole 20 ms blocks)."""
        gap_ms = int((now - self._last_audio) * 1000)
        if self.done or gap_ms < MAX_GAP * 1000:
            return
        blocks = gap_ms // BLOCK_MS
        self._last_audio += blocks * BLOCK_MS / 1000
        silence = np.zeros(BLOCK, dtype=np.float64)
        for _ in range(blocks):
            if self._block(silence):
                break

    def get_timer(self) -> float | None:
        """When to call `handle_timer` if no audio arrives before (None once done)."""
        return None if self.done else self._last_audio + MAX_GAP

    def next_event(self) -> AmdEvent | None:
        return self._events.popleft() if self._events else None

    # -- analysis ------------------------------------------------------------------------------------------
    def _block(self, block: npt.NDArray[np.float64]) -> bool:
        """Analyse one 20 ms block; True once done."""
        self._analyse(block)
        return self.done

    def _analyse(self, block: npt.NDArray[np.float64]) -> None:
        p = self.parameters
        self._total_ms += BLOCK_MS
        silent = float(np.mean(np.abs(block))) < p.silence_threshold
        self._beep(block, silent)
        if self.done:
            return
        if self.verdict is not None:
            self._after_verdict(silent)
            return
        if self._total_ms >= p.total_analysis_time:
            self._decide("NOTSURE", f"TOOLONG-{self._total_ms}")
            return
        if silent:
            self._silence_ms += BLOCK_MS
            if self._silence_ms >= p.between_words_silence:
                self._in_word = False
                self._consecutive_voice_ms = 0
            if self._in_initial_silence and self._silence_ms >= p.initial_silence:
                self._decide("MACHINE", f"INITIALSILENCE-{self._silence_ms}-{p.initial_silence}")
            elif self._in_greeting and self._silence_ms >= p.after_greeting_silence:
                self._decide("HUMAN", f"HUMAN-{self._silence_ms}-{p.after_greeting_silence}")
            return
        self._silence_ms = 0
        self._consecutive_voice_ms += BLOCK_MS
        self._voice_ms += BLOCK_MS
        if self._consecutive_voice_ms >= p.min_word_length and not self._in_word:
            self._words += 1
            self._in_word = True
        if self._consecutive_voice_ms >= p.maximum_word_length:
            self._decide("MACHINE", f"MAXWORDLENGTH-{self._consecutive_voice_ms}")
        elif self._words > p.maximum_number_of_words:
            self._decide("MACHINE", f"MAXWORDS-{self._words}-{p.maximum_number_of_words}")
        elif self._in_greeting and self._voice_ms >= p.greeting:
            self._decide("MACHINE", f"LONGGREETING-{self._voice_ms}-{p.greeting}")
        elif self._consecutive_voice_ms >= p.min_word_length and not self._in_greeting:
            self._in_initial_silence = False
            self._in_greeting = True

    def _after_verdict(self, silent: bool) -> None:
        """A machine: wait for the beep, or the end of its greeting (silence), or give up waiting."""
        p = self.parameters
        self._silence_since_verdict = self._silence_since_verdict + BLOCK_MS if silent else 0
        if self._silence_since_verdict >= p.greeting_end_silence:
            self._greeting_over("silence")
        elif self._total_ms >= p.max_greeting_wait:
            self._greeting_over("timeout")

    def _beep(self, block: npt.NDArray[np.float64], silent: bool) -> None:
        window = np.concatenate((self._previous, block))
        self._previous = block
        tone_hz = None if silent else self._tone(window)
        if tone_hz is not None and (self._tone_ms == 0 or abs(tone_hz - self._tone_hz) <= BEEP_DRIFT_HZ):
            if self._tone_ms == 0:
                self._tone_hz = tone_hz
            self._tone_ms += BLOCK_MS
            return
        # The 40 ms window straddles the tone's start: count from the first tonal window, less one block.
        length = self._tone_ms + BLOCK_MS if self._tone_ms else 0
        self._tone_ms, frequency = 0, self._tone_hz
        if tone_hz is not None:  # a tone of another pitch starts right away (two-tone beeps)
            self._tone_ms, self._tone_hz = BLOCK_MS, tone_hz
        if length >= self.parameters.beep_min_length:
            self._events.append(BeepDetected(self._total_ms - BLOCK_MS, round(frequency, 1), length))
            if self.verdict is None:
                self._decide("MACHINE", f"BEEP-{round(frequency)}")
            self._greeting_over("beep")

    def _tone(self, window: npt.NDArray[np.float64]) -> float | None:
        spectrum = np.abs(np.fft.rfft(window * self._hann, FFT_SIZE)) ** 2
        total = float(spectrum.sum())
        if total <= 0.0:
            return None
        in_band = np.where(self._band, spectrum, 0.0)
        peak = int(np.argmax(in_band))
        frequency = float(self._freqs[peak])
        near = np.abs(self._freqs - frequency) <= BEEP_LOBE_HZ
        if float(spectrum[near].sum()) / total < self.parameters.beep_tonality:
            return None
        return frequency

    def _decide(self, status: Status, cause: str) -> None:
        self.verdict = AmdVerdict(status, cause, self._total_ms)
        self._events.append(self.verdict)
        if status != "MACHINE":
            self.done = True

    def _greeting_over(self, cause: Literal["beep", "silence", "timeout"]) -> None:
        self._events.append(GreetingEnded(self._total_ms, cause))
        self.done = True
