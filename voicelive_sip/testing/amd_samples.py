"""A labelled set of call openings for answering-machine detection: voicemail greetings and people answering.

Spoken by espeak-ng (several voices and speeds), with numpy silences, beeps and line noise, all from one seed.
`python -m voicelive_sip.testing.amd_samples` runs the detector over the set and prints the confusion matrix.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..amd import AmdParameters, AmdVerdict, AnsweringMachineDetector, BeepDetected
from .phone import Pcm, render_sentence

__all__ = ["AmdSample", "classify", "confusion", "labelled_set", "main"]

RATE = 8000
Label = Literal["HUMAN", "MACHINE"]
VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us+f3", "en-gb+f2", "en-us+m4")

GREETINGS = (
    "Hi, you've reached Dana. I can't take your call right now. Please leave a message after the tone.",
    "Hello, this is Michael. Sorry I missed you. Leave your name and number and I'll call you back.",
    "The person you are calling is not available. Please record your message after the tone.",
    "You have reached the voicemail of Sarah Miller. Please leave a message.",
    "Thanks for calling Acme Dental. Our office is closed. Leave a message and we will return your call.",
    "Hey, it's Tom. Leave a message.",
    "Please leave a message after the beep.",
    "Hi, you've reached the Johnsons. We're not home right now, leave a message and we'll call you back.",
    "This mailbox belongs to Chris. I'm away until Monday. For urgent matters, call the front desk.",
    "Hello. You have reached five five five, zero one zero zero. Please leave a message.",
)
HUMAN_ANSWERS = (
    "Hello?",
    "Yes, this is Dana speaking",
    "Hello",
    "Hi",
    "Yeah?",
    "Hello, who is this?",
    "Dana speaking",
    "Good morning",
    "Yes?",
    "Speaking",
)


@dataclass(frozen=True, slots=True)
class AmdSample:
    """One call opening: what the callee sends from the answer on, and who it is."""

    name: str
    label: Label
    pcm: Pcm


def _silence(ms: int) -> Pcm:
    return np.zeros(RATE * ms // 1000, dtype=np.int16)


def beep(ms: int, frequency: float, level: float = 0.3) -> Pcm:
    """A voicemail beep: a pure tone with 5 ms ramps."""
    t = np.arange(RATE * ms // 1000) / RATE
    tone = np.sin(2 * np.pi * frequency * t) * level * 32767
    ramp = min(40, len(tone) // 2)
    tone[:ramp] *= np.linspace(0, 1, ramp)
    tone[len(tone) - ramp :] *= np.linspace(1, 0, ramp)
    return tone.astype(np.int16)


def _speech(text: str, voice: str, speed: int) -> Pcm:
    pcm = render_sentence(text, voice=f"{voice}", speed=speed)
    if pcm is None:
        raise RuntimeError("espeak-ng is not installed")
    return _trim(pcm)


def _trim(pcm: Pcm) -> Pcm:
    """espeak-ng's own leading and trailing silence, cut so the set's silences are the ones chosen."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 200)
    return pcm if loud.size == 0 else pcm[loud[0] : loud[-1] + 1]


def _noisy(pcm: Pcm, rng: np.random.Generator, level: float) -> Pcm:
    noise = rng.normal(0, level, len(pcm))
    return np.clip(pcm.astype(np.float64) + noise, -32768, 32767).astype(np.int16)


def labelled_set(seed: int = 17, machines: int = 24, humans: int = 24) -> list[AmdSample]:
    """`machines` voicemail greetings (half with a beep) and `humans` answers, reproducible from `seed`."""
    picks = random.Random(seed)
    rng = np.random.default_rng(seed)
    samples: list[AmdSample] = []
    for i in range(machines):
        text = GREETINGS[i % len(GREETINGS)]
        voice, speed = picks.choice(VOICES), picks.randint(140, 200)
        lead = picks.choice((200, 400, 700, 1000))
        parts = [_silence(lead), _speech(text, voice, speed), _silence(picks.randint(200, 700))]
        with_beep = i % 2 == 0
        if with_beep:
            parts.append(beep(picks.choice((300, 500, 1000)), picks.choice((440.0, 850.0, 1000.0, 1400.0))))
        parts.append(_silence(3000))
        pcm = _noisy(np.concatenate(parts), rng, picks.choice((30.0, 60.0, 100.0)))
        samples.append(AmdSample(f"machine-{i:02d}{'-beep' if with_beep else ''}", "MACHINE", pcm))
    for i in range(humans):
        text = HUMAN_ANSWERS[i % len(HUMAN_ANSWERS)]
        voice, speed = picks.choice(VOICES), picks.randint(150, 210)
        # People answer at once, or after a moment (the phone to the ear), then wait for the caller.
        lead = picks.choice((100, 300, 600, 1200, 1800))
        parts = [_silence(lead), _speech(text, voice, speed), _silence(3000)]
        pcm = _noisy(np.concatenate(parts), rng, picks.choice((30.0, 60.0, 100.0)))
        samples.append(AmdSample(f"human-{i:02d}", "HUMAN", pcm))
    return samples


def classify(pcm: Pcm, parameters: AmdParameters | None = None) -> tuple[AmdVerdict | None, bool]:
    """The detector's verdict on `pcm` fed in 20 ms frames (audio time), and whether it heard a beep."""
    detector = AnsweringMachineDetector(parameters)
    beeped = False
    for start in range(0, len(pcm), 160):
        detector.receive_audio(pcm[start : start + 160], start / RATE)
        while (event := detector.next_event()) is not None:
            beeped = beeped or isinstance(event, BeepDetected)
        if detector.done:
            break
    return detector.verdict, beeped


def confusion(
    samples: list[AmdSample], parameters: AmdParameters | None = None
) -> tuple[Counter[tuple[str, str]], list[tuple[str, str]]]:
    """(label, verdict) counts over `samples`, and the verdict cause of each sample by name."""
    matrix: Counter[tuple[str, str]] = Counter()
    causes: list[tuple[str, str]] = []
    for sample in samples:
        verdict, beeped = classify(sample.pcm, parameters)
        status = verdict.status if verdict is not None else "NOTSURE"
        matrix[sample.label, status] += 1
        cause = verdict.cause if verdict is not None else ""
        causes.append((sample.name, f"{status} {cause}{' +beep' if beeped else ''}"))
    return matrix, causes


def main() -> None:
    samples = labelled_set()
    matrix, causes = confusion(samples)
    if "-v" in sys.argv:
        for name, cause in causes:
            print(f"{name:20} {cause}")
    print("| actual \\ verdict | HUMAN | MACHINE | NOTSURE |")
    print("|---|---|---|---|")
    for label in ("HUMAN", "MACHINE"):
        row = " | ".join(str(matrix[label, status]) for status in ("HUMAN", "MACHINE", "NOTSURE"))
        print(f"| {label} | {row} |")
    correct = matrix["HUMAN", "HUMAN"] + matrix["MACHINE", "MACHINE"]
    print(f"\n{correct}/{len(samples)} correct ({100 * correct / len(samples):.1f} %)")


if __name__ == "__main__":
    main()
