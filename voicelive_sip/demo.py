"""`voicelive-sip demo`: a whole call on loopback, no account and no network.

A SipPhone calls the Gateway, which bridges it to the bundled FakeVoiceLive. The agent greets, the caller
asks a question over the greeting (barge-in), the agent answers, the caller hangs up. The demo prints the
transcript with timings and writes the stereo recording and a PNG timeline of who spoke when.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import sys
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from .bridge import CallSummary
from .call_events import TranscriptLine
from .config import GatewaySettings, MediaSettings, Settings, SipSettings
from .gateway import Gateway
from .testing.fake_voicelive import FakeReply, FakeVoiceLive
from .testing.phone import QUESTION_WAV, PhoneCall, SipPhone, load_audio, render_sentence

QUESTION = "Hello, can you tell me the opening hours of the store?"
GREETING = (
    "Hello! Thanks for calling the demo store. I can help you with opening hours, orders and directions. "
    "What would you like to know?"
)
ANSWER = "We are open from nine in the morning to six in the evening, Monday to Saturday."
FRAME = 0.02


@dataclass(slots=True)
class DemoResult:
    summary: CallSummary
    recording: Path | None
    timeline: Path | None
    barge_in_reaction_ms: float | None
    lines: list[tuple[float, str, str]]


def _say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


async def run(output: Path, *, out: TextIO = sys.stdout, pace: float = 1.0) -> DemoResult:
    speech = shutil.which("espeak-ng") is not None
    _say(out, "voicelive-sip demo: a phone calls the gateway on 127.0.0.1; Voice Live is the bundled fake.")
    _say(out, f"  voices: {'espeak-ng speech' if speech else 'tones (install espeak-ng for speech)'}")
    output.mkdir(parents=True, exist_ok=True)
    fake = FakeVoiceLive(
        voice="speech" if speech else "tone",
        pace=pace,
        greeting=GREETING,
        replies=[FakeReply(text=ANSWER)],
        transcripts=[QUESTION],
    )
    async with fake:
        settings = Settings(
            sip=SipSettings(port=0, local_address="127.0.0.1", user="agent@127.0.0.1"),
            media=MediaSettings(address="127.0.0.1", public_address=None, port=24000, port_count=200),
            voicelive=fake.settings(proactive_greeting_enabled=True, proactive_greeting=GREETING),
            gateway=GatewaySettings(recording_dir=str(output)),
        )
        async with Gateway(settings) as gateway, SipPhone(media_port=25000) as phone:
            loop = asyncio.get_running_loop()
            target = f"sip:agent@127.0.0.1:{gateway.ua.address[1]}"
            _say(out, f"  gateway listening on udp/tcp {gateway.ua.address[0]}:{gateway.ua.address[1]}")
            _say(out, f"  phone dials {target} ...")
            t0 = loop.time()
            call = await phone.call(target)
            session = await gateway.next_call()
            # The caller lets 1.5 s of the greeting play (75 frames of 20 ms heard), then talks over it.
            await call.wait_for(lambda c: _heard_s(c) >= 1.5, timeout=10 + 10 * pace)
            question = render_sentence(QUESTION) if speech else None
            audio = question if question is not None else load_audio(QUESTION_WAV)
            _say(out, "  the caller speaks over the greeting ...")
            await call.play(audio, pace=pace)
            await session.wait_for(TranscriptLine, lambda line: line.text == ANSWER, timeout=30)
            # The answer is in the transcript as soon as it is generated; hang up once it has been heard.
            await call.wait_for(lambda c: loop.time() - _last_loud(c) > 0.8, timeout=30)
            await call.hangup()
            summary = await session.wait_ended(timeout=10)
        speech_started = fake.sent_at("input_audio_buffer.speech_started")
    reaction = _reaction_ms(call, speech_started[0]) if speech_started else None
    lines = _timeline(summary, speech_started=speech_started, t0=t0)
    timeline = _draw_timeline(summary.recording, output / "timeline.png") if summary.recording else None
    _report(out, summary, lines, reaction, timeline)
    return DemoResult(summary, summary.recording, timeline, reaction, lines)


def _heard_s(call: PhoneCall) -> float:
    """Seconds of loud agent audio the phone has heard."""
    return sum(FRAME for frame in call.received if _loud(frame.payload))


@functools.lru_cache(maxsize=4096)  # the phone's wait_for re-checks every frame heard so far
def _loud(payload: bytes) -> bool:
    from .codecs import g711

    pcm = g711.ulaw_decode(payload).astype(np.float64)
    return bool(np.sqrt(np.mean(pcm**2)) > 300)


def _last_loud(call: PhoneCall) -> float:
    return max((f.time for f in call.received if _loud(f.payload)), default=0.0)


def _reaction_ms(call: PhoneCall, speech_started: float) -> float | None:
    """From Voice Live's speech_started to the last greeting frame the caller heard."""
    loud = sorted(f.time for f in call.received if _loud(f.payload) and f.time >= speech_started - 0.5)
    last = None
    for moment in loud:
        if moment > speech_started + 0.5:
            break  # past the gap: that is the answer, not the greeting
        last = moment
    return None if last is None else max(0.0, (last - speech_started) * 1000)


def _timeline(
    summary: CallSummary, *, speech_started: list[float], t0: float
) -> list[tuple[float, str, str]]:
    """Who did what, in seconds since the phone dialled."""
    answered = (summary.answered_after_ms or 0.0) / 1000
    lines: list[tuple[float, str, str]] = [(0.0, "phone", "dials the gateway")]
    lines.append((answered, "gateway", "answers: 200 OK once Voice Live is connected"))
    for moment in speech_started[:1]:
        lines.append((moment - t0, "gateway", "caller speech detected: agent audio cleared, reply cut off"))
    for line in summary.transcript:
        text = f"{line.text} ... (interrupted)" if line.interrupted else line.text
        lines.append((answered + line.at, line.role, text))
    who = "phone" if summary.ended_by == "remote" else "gateway"
    lines.append((answered + summary.duration_s, who, f"hangs up ({summary.end_reason})"))
    return sorted(lines, key=lambda line: line[0])


def _report(
    out: TextIO,
    summary: CallSummary,
    lines: list[tuple[float, str, str]],
    reaction: float | None,
    timeline: Path | None,
) -> None:
    _say(out, "")
    _say(out, "Transcript")
    for moment, who, text in lines:
        _say(out, f"  {moment:6.2f} s  {who:>7}: {text}")
    _say(out, "")
    _say(out, "Timings")
    if summary.answered_after_ms is not None:
        _say(out, f"  time to answer ............... {summary.answered_after_ms:7.0f} ms (INVITE to 200 OK)")
    if summary.first_agent_audio_ms is not None:
        _say(
            out, f"  time to first agent audio .... {summary.first_agent_audio_ms:7.0f} ms (after the answer)"
        )
    for turn in summary.turns:
        tools = f", tools {turn.tool_ms:.0f} ms ({', '.join(turn.tools)})" if turn.tools else ""
        _say(
            out,
            f"  {_label(f'turn at {turn.at:.2f} s')} {turn.total_ms:7.0f} ms speech end to agent audio "
            f"(service {turn.service_ms:.0f} ms, gateway {turn.gateway_ms:.0f} ms{tools})",
        )
    if summary.turn_latency_p50_ms is not None:
        _say(
            out,
            f"  turn latency p50 / p95 ....... {summary.turn_latency_p50_ms:7.0f} / "
            f"{summary.turn_latency_p95_ms:.0f} ms",
        )
    if reaction is not None:
        _say(out, f"  barge-in reaction ............ {reaction:7.0f} ms of agent audio after speech began")
    _say(out, f"  barge-ins .................... {summary.barge_ins:7d}")
    s = summary
    _say(out, f"  call duration ................ {s.duration_s:7.2f} s ({s.end_reason}, by {s.ended_by})")
    _say(out, f"  RTP sent / received / lost ... {s.packets_sent} / {s.packets_received} / {s.packets_lost}")
    for name, quality in (("received", s.quality_received), ("sent", s.quality_sent)):
        if quality is not None:
            _say(
                out,
                f"  {_label(f'MOS-CQ {name}')} {quality.mos:7.2f} (R {quality.r_factor}, "
                f"loss {quality.loss_percent} %, jitter {quality.jitter_ms} ms)",
            )
    _say(out, f"  tokens (fake) ................ {summary.total_tokens}")
    _say(out, "")
    if summary.recording is not None:
        _say(out, f"Recording (left caller, right agent): {summary.recording}")
    if timeline is not None:
        _say(out, f"Timeline of who spoke when:          {timeline}")


def _label(text: str) -> str:
    """`text` padded with dots to the width of the timings' labels."""
    return f"{text} ".ljust(30, ".")


def _levels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per-20 ms RMS of the caller (left) and agent (right) channels of the recording."""
    with wave.open(str(path)) as wav:
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)
        rate = wav.getframerate()  # 8 kHz for a G.711 call, 16 kHz for G.722
    size = int(rate * FRAME)
    usable = len(frames) // size * size
    blocks = frames[:usable].astype(np.float64).reshape(-1, size, 2)
    rms = np.sqrt(np.mean(blocks**2, axis=1))
    return rms[:, 0], rms[:, 1]


def _draw_timeline(recording: Path, path: Path) -> Path:
    from PIL import Image, ImageDraw

    caller, agent = _levels(recording)
    seconds = len(caller) * FRAME
    width, left, row = 1000, 90, 40
    height = 40 + 2 * (row + 20) + 40
    scale = (width - left - 20) / max(seconds, 1.0)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((left, 10), "voicelive-sip demo: who spoke when (from the call recording)", fill="black")
    for index, (label, levels, colour) in enumerate(
        (("caller", caller, "#1f77b4"), ("agent", agent, "#ff7f0e"))
    ):
        top = 40 + index * (row + 20)
        draw.text((10, top + row // 2 - 6), label, fill="black")
        draw.rectangle((left, top, width - 20, top + row), outline="#cccccc")
        for i, level in enumerate(levels):
            if level > 300:
                x = left + i * FRAME * scale
                draw.rectangle((x, top + 2, x + max(1.0, FRAME * scale), top + row - 2), fill=colour)
    axis = 40 + 2 * (row + 20)
    for second in range(int(seconds) + 1):
        x = left + second * scale
        draw.line((x, axis - 14, x, axis - 8), fill="black")
        draw.text((x - 3, axis - 6), f"{second}", fill="black")
    draw.text((width // 2 - 30, axis + 14), "seconds", fill="black")
    image.save(path)
    return path


def main(output: str = "voicelive-sip-demo") -> int:
    result = asyncio.run(run(Path(output)))
    return 0 if result.summary.end_reason else 1
