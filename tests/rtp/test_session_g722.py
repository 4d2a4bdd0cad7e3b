"""RtpSession carrying G.722: PCM16 16 kHz on the leg, 160-byte payloads on the wire with the RFC 3551 clock
quirk (timestamp +160 per 20 ms), concealment on decoded audio, DTMF and SRTP as with G.711, junk survived."""

from __future__ import annotations

import itertools
import os

import numpy as np
import numpy.typing as npt

from tests.codecs.test_g722 import TONE_SNR_FLOOR_DB, snr_db
from tests.rtp.conftest import until as _until
from voicelive_sip.codecs import Codec
from voicelive_sip.codecs.g722 import G722Decoder, G722Encoder
from voicelive_sip.media import DtmfReceived, MediaEvent
from voicelive_sip.rtp.clock import MediaClock
from voicelive_sip.rtp.jitter import Frame
from voicelive_sip.rtp.packet import RtpPacket
from voicelive_sip.rtp.session import PortPool, RtpSession
from voicelive_sip.sdes import SdesKey, SrtpKeys
from voicelive_sip.testing.rtp import RtpLoopback, RtpRecorder

LOCAL = "127.0.0.1"
FRAME_PCM = 640  # 20 ms of PCM16 at 16 kHz: what crosses the leg per packet


def _pool(count: int = 200) -> PortPool:
    return PortPool(LOCAL, 36000 + (os.getpid() % 300) * 20, count)


def tone(hz: float, seconds: float, level: float = 16384) -> npt.NDArray[np.int16]:
    t = np.arange(int(16000 * seconds)) / 16000
    return (np.sin(2 * np.pi * hz * t) * level).astype(np.int16)


def pcm(frames: list[Frame]) -> npt.NDArray[np.int16]:
    return np.frombuffer(b"".join(f.payload for f in frames), dtype="<i2").astype(np.int16)


def loud(frame: Frame) -> bool:
    samples = np.frombuffer(frame.payload, dtype="<i2").astype(np.float64)
    return bool(np.sqrt(np.mean(samples**2)) > 1000)


async def test_the_wire_carries_g722_payload_9_with_the_8000_clock(clock: MediaClock) -> None:
    sent = tone(1000, 0.5)
    async with RtpRecorder() as peer:
        session = await RtpSession.open(_pool(), clock=clock, inactivity_timeout=None)
        try:
            session.set_remote(peer.address, None, 9, "G722", None)
            await peer.wait_for(3)
            assert session.enqueue(sent.tobytes()) == 16000
            assert session.queued_ms == 500  # 32 bytes a millisecond on the leg
            await _until(lambda: session.played_ms == 500)
            await peer.wait_for(len(peer.arrivals) + 3)
        finally:
            session.close()
    packets = [p for p in peer.packets() if p.payload_type == 9]
    assert {len(p.payload) for p in packets} == {160}  # 320 samples at 16 kHz, 4 bits each
    steps = {(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(packets)}
    assert steps == {160}  # RFC 3551 §4.5.2: the RTP clock is 8000 although G.722 samples at 16 kHz
    # The peer's decoder, fed every packet in order (silence too: one ADPCM stream), hears the tone.
    decoder = G722Decoder()
    heard = np.frombuffer(b"".join(decoder.decode(p.payload) for p in packets), dtype="<i2")
    start = next(i for i, p in enumerate(packets) if p.marker) * 320
    # From the second frame: the first is the ADPCM step size growing from silence to a -6 dBFS tone (16 dB).
    snr, _ = snr_db(sent[320:-320], heard[start + 320 :].astype(np.int16))
    assert snr > TONE_SNR_FLOOR_DB, snr
    silence = heard[: start - 640].astype(np.float64)  # before the tone: encoded silence, decoded quiet
    assert np.sqrt(np.mean(silence**2)) < 50


async def test_audio_both_ways_decodes_to_pcm16_16k_frames(clock: MediaClock) -> None:
    received: dict[str, list[Frame]] = {"a": [], "b": []}
    async with RtpLoopback(
        port=_pool().acquire(), clock=clock, codec="G722", payload_type=9, inactivity_timeout=None
    ) as pair:
        assert pair.a.codec is Codec.G722
        pair.a.on_frame = received["b"].append
        pair.b.on_frame = received["a"].append
        pair.a.enqueue(tone(1000, 0.4).tobytes())
        pair.b.enqueue(tone(7000, 0.4).tobytes())  # upper band: what G.711 could not carry
        await _until(lambda: sum(map(loud, received["a"])) >= 20 and sum(map(loud, received["b"])) >= 20)
        for origin, hz in (("a", 1000), ("b", 7000)):
            frames = [f for f in received[origin] if loud(f)]
            assert {len(f.payload) for f in frames} == {FRAME_PCM}
            audio = pcm(frames)[640:].astype(np.float64)
            peak = np.fft.rfftfreq(len(audio), 1 / 16000)[np.argmax(np.abs(np.fft.rfft(audio)))]
            assert abs(peak - hz) < 50, (origin, peak)
        assert pair.b.stats.frames_concealed == 0


async def test_a_lost_packet_is_concealed_as_pcm_and_junk_never_stops_the_pump() -> None:
    frames: list[Frame] = []
    encoder = G722Encoder()
    payloads = [encoder.encode(tone(500, 0.02, 8000).tobytes()) for _ in range(12)]
    async with RtpRecorder() as peer:
        session = await RtpSession.open(_pool(), on_frame=frames.append, inactivity_timeout=None)
        try:
            session.set_remote(peer.address, None, 9, "G722", None)
            target = (LOCAL, session.local_port)
            for seq in (0, 1, 2, 4, 5):  # 3 is lost
                peer.sendto(RtpPacket(9, seq, seq * 160, 7, payloads[seq]).serialize(), target)
            await _until(lambda: len(frames) == 6)  # 3 concealed once 4 and 5 show it is lost
            # Hostile payloads: odd sizes, one byte, a jumbo, random bytes; each decodes (to noise) in turn.
            junk = [b"\x01", b"\x00\x01\x02", os.urandom(161), os.urandom(1400), bytes(range(256))]
            for seq, payload in enumerate(junk, 6):
                peer.sendto(RtpPacket(9, seq, seq * 160, 7, payload).serialize(), target)
            peer.sendto(RtpPacket(9, 11, 11 * 160, 7, payloads[11]).serialize(), target)
            await _until(lambda: len(frames) == 12)
        finally:
            session.close()
    assert [f.sequence % 65536 for f in frames] == list(range(12))
    concealed = frames[3]
    assert concealed.concealed and len(concealed.payload) == FRAME_PCM
    # A faded copy of the last decoded frame (not G.722 bytes played as PCM): same waveform, less energy.
    before, made = (np.frombuffer(f.payload, dtype="<i2").astype(np.float64) for f in (frames[2], concealed))
    assert 0 < np.sum(made**2) < np.sum(before**2)
    assert [len(f.payload) for f in frames[6:11]] == [4 * len(p) for p in junk]
    assert session.stats.frames_concealed == 1
    assert len(frames[11].payload) == FRAME_PCM and not frames[11].concealed


async def test_dtmf_and_srtp_work_with_g722(clock: MediaClock) -> None:
    frames: list[Frame] = []
    events: list[MediaEvent] = []
    async with RtpLoopback(
        port=_pool().acquire(), clock=clock, codec="G722", payload_type=9, inactivity_timeout=None
    ) as pair:
        a, b = SdesKey.generate("AES_CM_128_HMAC_SHA1_80"), SdesKey.generate("AES_CM_128_HMAC_SHA1_80")
        ends = ((pair.a, SrtpKeys(a, b, 1), pair.b), (pair.b, SrtpKeys(b, a, 1), pair.a))
        for session, keys, other in ends:
            assert session.remote is not None
            session.set_remote(session.remote, (LOCAL, other.rtcp_port), 9, "G722", 101, srtp=keys)
        pair.b.on_frame = frames.append
        pair.b.on_event = events.append
        pair.a.send_dtmf("9", 80)  # telephone-event/8000: the same clock as G.722's RTP timestamps
        pair.a.enqueue(tone(1000, 0.2).tobytes())
        await _until(lambda: any(isinstance(e, DtmfReceived) for e in events))
        await _until(lambda: sum(map(loud, frames)) >= 8)
        (dtmf,) = [e.event for e in events if isinstance(e, DtmfReceived)]
        assert (dtmf.digit, dtmf.duration_ms) == ("9", 80)
        assert pair.b.stats.srtp_suite == "AES_CM_128_HMAC_SHA1_80"
        assert pair.b.stats.srtp_auth_failures == 0
