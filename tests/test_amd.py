"""The answering-machine detector: app_amd's decisions on synthetic audio fed 20 ms at a time, fake clock."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from voicelive_sip.amd import (
    AmdEvent,
    AmdParameters,
    AmdVerdict,
    AnsweringMachineDetector,
    BeepDetected,
    GreetingEnded,
)
from voicelive_sip.testing.amd_samples import beep, confusion, labelled_set

RATE = 8000


def silence(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000, dtype=np.int16)


def voice(ms: int, level: int = 4000) -> np.ndarray:
    """Speech-like: a buzz with several harmonics (no single pure tone), loud enough to be voice."""
    t = np.arange(RATE * ms // 1000) / RATE
    wave = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 15))
    return (wave / np.max(np.abs(wave)) * level).astype(np.int16)


def words(*spec: int) -> np.ndarray:
    """Alternating voice and silence lengths (ms), starting with voice."""
    return np.concatenate([voice(ms) if i % 2 == 0 else silence(ms) for i, ms in enumerate(spec)])


def run(pcm: np.ndarray, parameters: AmdParameters | None = None) -> list[AmdEvent]:
    """Feed `pcm` in 20 ms frames, the fake clock advancing 20 ms per frame; every event, in order."""
    detector = AnsweringMachineDetector(parameters, now=100.0)
    events: list[AmdEvent] = []
    for index, start in enumerate(range(0, len(pcm), 160)):
        detector.receive_audio(pcm[start : start + 160], 100.0 + index * 0.02)
        while (event := detector.next_event()) is not None:
            events.append(event)
    return events


def verdict(events: list[AmdEvent]) -> AmdVerdict:
    found = [event for event in events if isinstance(event, AmdVerdict)]
    assert len(found) == 1
    return found[0]


def test_a_short_hello_then_silence_is_a_human_after_the_after_greeting_silence() -> None:
    result = verdict(run(np.concatenate([silence(300), voice(400), silence(2000)])))
    assert (result.status, result.cause) == ("HUMAN", "HUMAN-800-800")
    assert result.at_ms == 300 + 400 + 800


def test_a_long_greeting_is_a_machine() -> None:
    # One long word (no pauses): the greeting's speech passes 1500 ms.
    result = verdict(run(np.concatenate([silence(200), voice(1700), silence(2000)])))
    assert (result.status, result.cause) == ("MACHINE", "LONGGREETING-1500-1500")
    assert result.at_ms == 200 + 1500


def test_more_words_than_the_maximum_is_a_machine() -> None:
    # Three words of 200 ms (app_amd counts a word after silence; the first follows the initial silence).
    result = verdict(run(np.concatenate([silence(200), words(200, 100, 200, 100, 200), silence(2000)])))
    assert (result.status, result.cause) == ("MACHINE", "MAXWORDS-3-2")


def test_two_words_are_still_a_person() -> None:
    result = verdict(run(np.concatenate([silence(200), words(200, 100, 200), silence(2000)])))
    assert result.status == "HUMAN"


def test_the_word_limit_is_a_parameter() -> None:
    audio = np.concatenate([silence(200), words(200, 100, 200, 100, 200), silence(2000)])
    assert verdict(run(audio, AmdParameters(maximum_number_of_words=3))).status == "HUMAN"


def test_sounds_shorter_than_a_word_do_not_count() -> None:
    # Clicks of 60 ms (< min_word_length 100) between pauses: no words, no greeting; then silence.
    clicks = np.concatenate([silence(200), words(60, 100, 60, 100, 60, 100, 60), silence(3000)])
    result = verdict(run(clicks))
    assert result.cause.startswith("INITIALSILENCE")


def test_silence_from_the_start_is_a_machine_after_the_initial_silence() -> None:
    result = verdict(run(silence(4000)))
    assert (result.status, result.cause) == ("MACHINE", "INITIALSILENCE-2500-2500")
    assert result.at_ms == 2500


def test_no_audio_at_all_counts_as_silence_on_the_timer() -> None:
    detector = AnsweringMachineDetector(now=10.0)
    assert detector.get_timer() == pytest.approx(10.1)
    detector.handle_timer(10.05)  # too early: nothing counted
    assert detector.next_event() is None
    detector.handle_timer(12.5)
    event = detector.next_event()
    assert isinstance(event, AmdVerdict) and event.cause == "INITIALSILENCE-2500-2500"


def test_continuous_noise_above_the_threshold_is_notsure_at_the_total_analysis_time() -> None:
    # Speech that never pauses nor ends a greeting, with the greeting limit raised beyond the total time.
    events = run(voice(6000), AmdParameters(greeting=9000, maximum_word_length=9000))
    result = verdict(events)
    assert (result.status, result.cause) == ("NOTSURE", "TOOLONG-5000")


def test_one_endless_word_is_maxwordlength() -> None:
    params = AmdParameters(greeting=9000, maximum_word_length=1000)
    assert verdict(run(np.concatenate([silence(200), voice(3000)]), params)).cause == "MAXWORDLENGTH-1000"


def test_quiet_noise_under_the_silence_threshold_is_silence() -> None:
    rng = np.random.default_rng(1)
    hiss = rng.normal(0, 150, RATE * 3).astype(np.int16)  # mean |x| ~ 120 < 256
    assert verdict(run(hiss)).cause.startswith("INITIALSILENCE")
    loud = rng.normal(0, 600, RATE * 3).astype(np.int16)
    assert verdict(run(loud)).cause == "LONGGREETING-1500-1500"  # voice all along


def test_after_a_machine_verdict_the_beep_ends_the_greeting() -> None:
    greeting = words(900, 100, 900, 100, 900)
    events = run(np.concatenate([silence(300), greeting, silence(400), beep(500, 1000.0), silence(2000)]))
    assert verdict(events).status == "MACHINE"
    beeps = [event for event in events if isinstance(event, BeepDetected)]
    assert len(beeps) == 1
    assert beeps[0].frequency == pytest.approx(1000.0, abs=10)
    assert 480 <= beeps[0].length_ms <= 540
    ended = events[-1]
    assert isinstance(ended, GreetingEnded) and ended.cause == "beep"
    # The message starts when the tone has stopped, not before.
    beep_end_ms = 300 + 2900 + 400 + 500
    assert beep_end_ms <= ended.at_ms <= beep_end_ms + 60


@pytest.mark.parametrize("frequency", [440.0, 850.0, 1400.0, 1950.0])
def test_beeps_across_the_band_are_found(frequency: float) -> None:
    events = run(np.concatenate([voice(2000), silence(300), beep(300, frequency), silence(500)]))
    found = [event for event in events if isinstance(event, BeepDetected)]
    assert [round(event.frequency, -1) for event in found] == [pytest.approx(frequency, abs=20)]


def test_a_tone_outside_the_band_or_too_short_is_no_beep() -> None:
    events = run(
        np.concatenate([voice(2000), silence(300), beep(500, 250.0), silence(200), beep(60, 1000.0)])
    )
    assert not any(isinstance(event, BeepDetected) for event in events)


def test_speech_is_no_beep() -> None:
    events = run(np.concatenate([words(600, 80, 900, 60, 1200), silence(2000)]))
    assert not any(isinstance(event, BeepDetected) for event in events)


def test_a_beep_before_any_verdict_is_a_machine() -> None:
    events = run(np.concatenate([silence(200), voice(500), silence(200), beep(400, 1000.0), silence(500)]))
    result = verdict(events)
    assert (result.status, result.cause) == ("MACHINE", "BEEP-1000")
    assert isinstance(events[-1], GreetingEnded) and events[-1].cause == "beep"


def test_without_a_beep_the_greeting_ends_with_silence() -> None:
    events = run(np.concatenate([silence(200), voice(2000), silence(3000)]))
    assert verdict(events).status == "MACHINE"
    ended = events[-1]
    assert isinstance(ended, GreetingEnded) and ended.cause == "silence"
    assert ended.at_ms == 200 + 2000 + 1500


def test_a_greeting_that_never_ends_is_given_up_on() -> None:
    params = AmdParameters(max_greeting_wait=8000, maximum_word_length=60_000)
    events = run(voice(10_000), params)
    ended = events[-1]
    assert isinstance(ended, GreetingEnded) and (ended.cause, ended.at_ms) == ("timeout", 8000)


def test_a_human_verdict_is_final_and_the_detector_stops() -> None:
    detector = AnsweringMachineDetector()
    pcm = np.concatenate([silence(200), voice(300), silence(900), beep(500, 1000.0)])
    detector.receive_audio(pcm, 1.0)
    assert detector.done and detector.get_timer() is None
    assert isinstance(detector.next_event(), AmdVerdict)
    assert detector.next_event() is None


def test_frames_of_any_size_give_the_same_verdict() -> None:
    pcm = np.concatenate([silence(300), voice(400), silence(2000)])
    detector = AnsweringMachineDetector()
    for start in range(0, len(pcm), 97):
        detector.receive_audio(pcm[start : start + 97], 0.0)
    assert detector.verdict == verdict(run(pcm))


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_accuracy_on_the_labelled_set_is_at_least_90_percent() -> None:
    samples = labelled_set(seed=17)
    assert sum(s.label == "MACHINE" for s in samples) >= 20 and sum(s.label == "HUMAN" for s in samples) >= 20
    matrix, causes = confusion(samples)
    correct = matrix["HUMAN", "HUMAN"] + matrix["MACHINE", "MACHINE"]
    assert correct / len(samples) >= 0.9, causes
    # Every greeting with a beep has its beep found, and no beep is heard where there is none.
    for name, cause in causes:
        assert ("+beep" in cause) == name.endswith("-beep"), (name, cause)


@pytest.mark.parametrize("codec", ["PCMU", "G722"])
def test_a_wideband_call_reaches_the_same_verdict_as_g711(codec: str) -> None:
    # CallAmd feeds the 8 kHz detector: G.711 decoded, a G.722 leg's PCM16 16 kHz resampled down to it.
    import soxr

    from voicelive_sip.amd import AmdPolicy
    from voicelive_sip.amd_call import CallAmd
    from voicelive_sip.codecs import g711
    from voicelive_sip.codecs.names import Codec

    pcm = np.concatenate([silence(300), voice(1700), silence(2000)])
    leg = Codec.parse(codec)
    if leg.law is not None:
        payload, frame = g711.encode(leg.law, pcm), 160
    else:
        payload, frame = np.asarray(soxr.resample(pcm, RATE, 16000), dtype="<i2").tobytes(), 640
    amd = CallAmd(AmdPolicy(), leg, 100.0)
    events: list[AmdEvent] = []
    for index, start in enumerate(range(0, len(payload), frame)):
        amd.caller_frame(payload[start : start + frame], 100.0 + index * 0.02)
        while (event := amd.next_event()) is not None:
            events.append(event)
    result = verdict(events)
    assert (result.status, result.cause) == ("MACHINE", "LONGGREETING-1500-1500")
    assert abs(result.at_ms - (300 + 1500)) <= 20  # the resampler's delay is under one block
