"""One call's media: an RTP/RTCP socket pair from a port pool, symmetric RTP, jitter buffer, DTMF, RTCP, SRTP.

Receive: datagram → SRTP check (when keyed) → `RtpPacket` → source checks (latching) → `ReceptionStatistics`
→ `JitterBuffer` → frames (in order, concealment flagged) to a callback or a bounded queue. Send: the shared
`MediaClock` calls `on_tick`, which sends the next 20 ms frame from the bounded outbound buffer (or silence,
or a DTMF packet), protected when keyed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, cast

from voicelive_sip.codecs import g711
from voicelive_sip.codecs.names import Codec
from voicelive_sip.codecs.plc import Concealer, ConcealmentMode
from voicelive_sip.errors import VoiceLiveSipError
from voicelive_sip.media import ByeReceived, DtmfReceived, MediaEvent, MediaTimeout, SsrcChanged
from voicelive_sip.rtp.clock import MediaClock
from voicelive_sip.rtp.dtmf import TelephoneEventReceiver, TelephoneEventSender
from voicelive_sip.rtp.jitter import Frame, JitterBuffer
from voicelive_sip.rtp.outbound import OutboundBuffer
from voicelive_sip.rtp.packet import (
    RTP_HEADER_SIZE,
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtcpParseError,
    RtpPacket,
    RtpParseError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    build_rtp_header,
    is_rtcp,
    parse_rtcp,
    plain_rtp_header,
    serialize_rtcp,
)
from voicelive_sip.rtp.srtp import SrtpContext, SrtpDropped, SrtpSendError
from voicelive_sip.rtp.stats import ReceptionStatistics
from voicelive_sip.rtp.xr import RTCP_XR, VoipMetrics, parse_voip_metrics
from voicelive_sip.sdes import SrtpKeys

from .._logger import get_logger

if TYPE_CHECKING:  # PyAV loads only when a call negotiates G.722
    from voicelive_sip.codecs.g722 import G722Decoder, G722Encoder

__all__ = [
    "Direction",
    "PortPool",
    "PortPoolExhausted",
    "RtpOptions",
    "RtpSession",
    "RtpSessionStats",
]

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
Address = tuple[str, int]

COMFORT_NOISE_PT: Final = 13  # RFC 3389: the peer's comfort noise occupies sequence numbers, is not audio
CLOCK_RATE: Final = 8000  # G.722's RTP clock too (RFC 3551 §4.5.2), though its audio is 16 kHz
FRAME_SAMPLES: Final = 160  # 20 ms at 8 kHz: what the media clock sends per tick (its timestamp advance)
FRAME_MS: Final = 20
RTCP_INTERVAL: Final = 5.0  # RFC 3550 §6.2 minimum
NTP_EPOCH_OFFSET: Final = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)
MAX_SEND_BACKLOG: Final = 64 * 1024  # bytes queued in the transport before we drop instead of buffering
BIND_ATTEMPTS: Final = 16
SRTP_LOG_INTERVAL: Final = (
    1.0  # seconds between two rtp.srtp_dropped lines of one session (the rest are counted)
)


class PortPoolExhausted(VoiceLiveSipError, RuntimeError):
    """No RTP port pair is free: the UA should answer 503 Service Unavailable."""


class PortPool:
    """Even RTP ports (RTCP on port+1) in [port, port+count), handed out and returned in O(1)."""

    def __init__(self, address: str = "0.0.0.0", port: int = 10000, count: int = 1000) -> None:
        first = port + (port & 1)
        end = port + count
        if first + 1 >= end or end > 65536:
            raise ValueError(f"port range {port}+{count} holds no even/odd pair")
        self.address = address
        self._free: deque[int] = deque(range(first, end - 1, 2))
        self._in_use: set[int] = set()
        self._rng = random.SystemRandom()
        self.capacity = len(self._free)

    @property
    def available(self) -> int:
        """Port pairs free now."""
        return len(self._free)

    @property
    def in_use(self) -> int:
        """Port pairs handed out and not yet released."""
        return len(self._in_use)

    def acquire(self) -> int:
        """Take a random even port among the less recently used half; raises `PortPoolExhausted`.

        Random, so that nobody can guess the next call's port from the last one (an RTP sprayer needs the
        port); from the older half, so that a late packet of a call that just ended meets no new call.
        """
        if not self._free:
            raise PortPoolExhausted(f"all {self.capacity} RTP port pairs on {self.address} are in use")
        index = self._rng.randrange(max(1, len(self._free) // 2))
        self._free.rotate(-index)
        port = self._free.popleft()
        self._free.rotate(index)
        self._in_use.add(port)
        return port

    def release(self, port: int) -> None:
        """Return a port; it goes to the back so a late packet of the old call meets no new call."""
        if port not in self._in_use:
            raise ValueError(f"port {port} is not in use")
        self._in_use.remove(port)
        self._free.append(port)


@dataclass(frozen=True, slots=True)
class RtpSessionStats:
    """Counters of one session (send, receive, jitter buffer, RTCP) at one moment."""

    packets_sent: int
    octets_sent: int
    dtmf_sent: int
    silence_frames_sent: int
    packets_received: int
    packets_expected: int
    cumulative_lost: int
    fraction_lost: float
    jitter_ms: float
    frames_received: int
    frames_concealed: int
    duplicates: int
    late: int
    malformed: int
    foreign: int
    ignored: int
    frames_dropped: int
    ssrc_changes: int
    outbound_dropped_bytes: int
    send_dropped: int
    rtcp_sent: int
    rtcp_received: int
    remote_fraction_lost: float | None
    remote_cumulative_lost: int | None
    remote_jitter_ms: float | None
    round_trip_ms: float | None
    # SRTP: the suite in use (None for plain RTP), and received packets dropped because they failed
    # authentication (a bad tag, another key, plain RTP) or the replay check (malformed ones: `malformed`).
    srtp_suite: str | None = None
    srtp_auth_failures: int = 0
    srtp_replays: int = 0
    concealment_runs: int = 0  # runs of concealed frames (lost or too late): the burst-loss input of quality
    ptime: int = 20
    concealment: str = "fade"
    remote_voip_metrics: VoipMetrics | None = None  # RTCP XR (RFC 3611 §4.7) from the peer, if it sends them

    @property
    def srtp_dropped(self) -> dict[str, int]:
        """Received packets that failed SRTP, by kind (auth, replay): what metrics and summaries report."""
        return {"auth": self.srtp_auth_failures, "replay": self.srtp_replays}


class _UdpTransport(Protocol):
    # What asyncio's UDP transport offers (typeshed's DatagramTransport omits the write-buffer size).
    def sendto(self, data: bytes, addr: Address) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def close(self) -> None: ...


class _RtcpProtocol(asyncio.DatagramProtocol):
    def __init__(self, session: RtpSession) -> None:
        self._session = session

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._session.rtcp_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._session.error_received(exc)


def _ntp_now() -> int:
    wall = time.time() + NTP_EPOCH_OFFSET
    return int(wall * (1 << 32))


@dataclass(frozen=True, slots=True)
class RtpOptions:
    """How an `RtpSession` behaves, as plain data (the product's `MediaSettings.rtp_options()` builds one)."""

    symmetric: bool = True  # send to where the peer's RTP comes from (NAT), not only to the SDP address
    relatch_after: float = 2.0  # seconds of silence from the latched source before another may take over
    inactivity_timeout: float | None = 30.0  # no RTP/RTCP this long while media is expected: MediaTimeout
    hold_timeout: float | None = 300.0  # on hold (not receiving) this long: MediaTimeout(on_hold=True)
    rtcp_interval: float = RTCP_INTERVAL
    outbound_seconds: float = 30.0  # agent audio queued at most (bounded)
    concealment: ConcealmentMode = "fade"
    jitter_min_wait: float = 0.030
    jitter_max_wait: float = 0.120
    frame_queue_size: int = 50
    event_queue_size: int = 64
    cname: str | None = None
    # Strict RTP: a source other than the SDP address must first send this many in-sequence packets of one
    # SSRC, from the SDP address's host or the signalling peer's (NAT), before it is believed.
    probation: int = 4
    allow_from: tuple[str, ...] = ()  # networks (CIDR) media is accepted from; empty: anyone (SIP_ALLOW_FROM)


class RtpSession(asyncio.DatagramProtocol):
    """The media of one call. Create with `await RtpSession.open(pool, clock=...)`, then `set_remote(...)`.

    Received audio: `on_frame` callback, `receive(handler)` (payloads only), or `async for frame in
    session.frames()`. Events (DTMF, timeout, SSRC change, BYE): `on_event` callback, or `async for event in
    session.events()`. Send: `enqueue`. Implements `voicelive_sip.media.MediaLeg`.
    """

    def __init__(
        self,
        pool: PortPool,
        port: int,
        *,
        clock: MediaClock | None = None,
        options: RtpOptions | None = None,
        on_frame: Callable[[Frame], None] | None = None,
        on_event: Callable[[MediaEvent], None] | None = None,
        **overrides: Any,
    ) -> None:
        # `overrides` are RtpOptions fields given one by one (RtpSession.open(pool, symmetric=False)).
        options = replace(options or RtpOptions(), **overrides) if overrides else options or RtpOptions()
        self.options = options
        self.pool = pool
        self.local_port = port
        self.clock = clock
        self.symmetric = options.symmetric
        self.relatch_after = options.relatch_after
        self.inactivity_timeout = options.inactivity_timeout
        self.hold_timeout = options.hold_timeout
        self._allow = [ipaddress.ip_network(net, strict=False) for net in options.allow_from]
        self.rtcp_interval = options.rtcp_interval
        self.direction: Direction = "sendrecv"
        self.on_frame = on_frame
        self.on_event = on_event
        self._on_audio: Callable[[bytes], None] | None = None  # receive(): payloads only, before on_frame
        # Called with each frame of queued (agent) audio as it is sent: recording, playout metrics.
        self.on_played: Callable[[bytes], None] | None = None
        self.ssrc = random.SystemRandom().getrandbits(32)
        self.cname = options.cname or f"{os.urandom(6).hex()}@voicelive-sip"
        self._rng = random.Random(os.urandom(16))
        self._log = get_logger("voicelive_sip.rtp").bind(rtp_port=port)
        self._loop = asyncio.get_running_loop()
        self._transport: _UdpTransport | None = None
        self._rtcp_transport: _UdpTransport | None = None
        self._closed = False
        self._outbound_seconds = options.outbound_seconds
        self._concealment: ConcealmentMode = options.concealment
        self._jitter_min_wait = options.jitter_min_wait
        self._jitter_max_wait = options.jitter_max_wait
        self._frames: asyncio.Queue[Frame | None] = asyncio.Queue(options.frame_queue_size)
        self._events: asyncio.Queue[MediaEvent | None] = asyncio.Queue(options.event_queue_size)
        # Negotiated media (set_remote).
        self.remote: Address | None = None
        self.remote_rtcp: Address | None = None
        self.payload_type = 0
        self.codec = Codec.PCMU
        self.dtmf_payload_type: int | None = None
        self.rtcp_mux = False
        self.ptime = 20
        self._silence = bytes([g711.ULAW_SILENCE]) * FRAME_SAMPLES
        self.outbound = OutboundBuffer(
            frame_bytes=FRAME_SAMPLES, max_seconds=options.outbound_seconds, fill=g711.ULAW_SILENCE
        )
        # A wideband codec (G.722): the leg carries PCM16, so audio is encoded on send and decoded after the
        # jitter buffer, in order, with one ADPCM state per direction; concealment works on the decoded audio.
        self._encoder: G722Encoder | None = None
        self._decoder: G722Decoder | None = None
        self._pcm_concealer: Concealer | None = None
        self._played_before_ms = 0  # agent audio played through outbound buffers replaced since
        self._played_bytes_per_ms = Codec.PCMU.bytes_per_ms  # of the current outbound buffer
        self.jitter = self._new_jitter_buffer()
        self.reception = ReceptionStatistics(CLOCK_RATE)
        self.dtmf_receiver = TelephoneEventReceiver(clock_rate=CLOCK_RATE)
        self.dtmf_sender = TelephoneEventSender(clock_rate=CLOCK_RATE, frame_samples=FRAME_SAMPLES)
        # Latching (symmetric RTP): where the peer's media really comes from.
        self._source: Address | None = None
        self._rtcp_source: Address | None = None
        self._remote_ssrc: int | None = None
        self._latch_hosts: frozenset[str] = frozenset()  # hosts a NAT'd source may come from
        self._candidate: tuple[Address, int, int, int] | None = None  # (address, ssrc, last seq, count)
        self._gated = False  # nothing is sent until RTP arrives (an SDP address nobody vouched for)
        self._last_rx = self._loop.time()
        self._timed_out = False
        self._hold_since: float | None = None  # when our direction stopped receiving (a hold)
        # Send state.
        self._sequence = self._rng.getrandbits(16)
        self._timestamp_base = self._rng.getrandbits(32)
        self._last_tick: int | None = None
        self._talking = False
        self._last_rtp_timestamp = self._timestamp_base
        self._last_send_time = 0.0
        self._sent_since_report = False
        # Counters.
        self._packets_sent = 0
        self._octets_sent = 0
        self._dtmf_sent = 0
        self._silence_sent = 0
        self._frames_received = 0
        self._malformed = 0
        self._foreign = 0
        self._ignored = 0
        self._frames_dropped = 0
        self._ssrc_changes = 0
        self._send_dropped = 0
        self._rtcp_sent = 0
        self._rtcp_received = 0
        self._remote_report: ReportBlock | None = None
        self._remote_xr: VoipMetrics | None = None  # the peer's last RFC 3611 VoIP Metrics of our stream
        self._round_trip: float | None = None
        self._last_sr: tuple[int, float] | None = None  # middle 32 bits of the SR's NTP time, arrival
        # SRTP (set_remote with keys): the context, and what it dropped.
        self._srtp: SrtpContext | None = None
        self._srtp_auth_failures = 0
        self._srtp_replays = 0
        self._srtp_log_at = float("-inf")
        self._srtp_unlogged = 0
        # Timers.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._rtcp_timer: asyncio.TimerHandle | None = None

    # ----- lifecycle -------------------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        pool: PortPool,
        *,
        clock: MediaClock | None = None,
        options: RtpOptions | None = None,
        on_frame: Callable[[Frame], None] | None = None,
        on_event: Callable[[MediaEvent], None] | None = None,
        **overrides: Any,
    ) -> RtpSession:
        """Bind an RTP/RTCP port pair from `pool` and register with `clock`; raises `PortPoolExhausted`.

        `options` (plain data), or single `RtpOptions` fields as keywords (`symmetric=False`), set it up.
        """
        options = replace(options or RtpOptions(), **overrides) if overrides else options
        loop = asyncio.get_running_loop()
        last_error: OSError | None = None
        for _ in range(min(BIND_ATTEMPTS, pool.capacity)):
            port = pool.acquire()
            session = cls(pool, port, clock=clock, options=options, on_frame=on_frame, on_event=on_event)
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda session=session: session,  # type: ignore[misc]
                    local_addr=(pool.address, port),
                    family=socket.AF_INET6 if ":" in pool.address else socket.AF_INET,
                )
                try:
                    rtcp_transport, _ = await loop.create_datagram_endpoint(
                        lambda session=session: _RtcpProtocol(session),  # type: ignore[misc]
                        local_addr=(pool.address, port + 1),
                        family=socket.AF_INET6 if ":" in pool.address else socket.AF_INET,
                    )
                except OSError:
                    transport.close()
                    raise
            except OSError as exc:
                # Another process holds this port: give it back (to the end of the queue) and try the next.
                last_error = exc
                pool.release(port)
                session._log.warning("rtp.bind_failed", port=port, error=str(exc))
                continue
            session._transport = cast(_UdpTransport, transport)
            session._rtcp_transport = cast(_UdpTransport, rtcp_transport)
            if clock is not None:
                clock.add(session)
            session._schedule_rtcp(initial=True)
            session._log.debug("rtp.opened", ssrc=session.ssrc)
            return session
        raise PortPoolExhausted(f"could not bind an RTP port pair on {pool.address}: {last_error}")

    def close(self) -> None:
        """Send RTCP BYE, stop timers, close both sockets and return the port pair (idempotent)."""
        if self._closed:
            return
        if self.remote is not None and self._transport is not None:
            self._send_rtcp(bye=True)
        self._closed = True
        if self.clock is not None:
            self.clock.remove(self)
        for handle in (self._timer, self._rtcp_timer):
            if handle is not None:
                handle.cancel()
        self._timer = self._rtcp_timer = None
        for transport in (self._transport, self._rtcp_transport):
            if transport is not None:
                transport.close()
        self._transport = self._rtcp_transport = None
        self.pool.release(self.local_port)
        self._put(self._frames, None)
        self._put(self._events, None)
        self._log.debug("rtp.closed", stats=self.stats)

    async def __aenter__(self) -> RtpSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True after `close`."""
        return self._closed

    @property
    def rtcp_port(self) -> int:
        """The local RTCP port (RTP port + 1, RFC 3550 §11), or the RTP port with rtcp-mux."""
        return self.local_port if self.rtcp_mux else self.local_port + 1

    # ----- negotiation -------------------------------------------------------------------------------------

    def set_remote(
        self,
        addr: Address,
        rtcp_addr: Address | None = None,
        payload_type: int = 0,
        codec: Codec | str = Codec.PCMU,
        dtmf_pt: int | None = None,
        rtcp_mux: bool = False,
        ptime: int = 20,
        *,
        peer_host: str | None = None,
        confirm_first: bool = False,
        srtp: SrtpKeys | None = None,
    ) -> None:
        """Apply the negotiated media (after offer/answer, again on re-INVITE); restarts latching.

        `codec` is a `Codec` or any of its spellings (`Codec.parse`); ValueError for one this engine lacks.
        `peer_host` is the signalling peer's address: a NAT'd caller's media may come from it. With
        `confirm_first`, nothing is sent until RTP has come from the peer (an SDP address that could name a
        third party: no media reflection towards it). `srtp`: the SDES keys (NegotiatedMedia.srtp), None for
        plain RTP; keys that did not change keep their SRTP context.
        """
        try:
            chosen = Codec.parse(codec)
        except ValueError:
            chosen = None
        if chosen is None or not chosen.on_sip:
            raise ValueError(
                f"unsupported codec {codec!r}; this engine carries {[c.value for c in Codec.sip()]}"
            )
        codec_changed = chosen != self.codec or payload_type != self.payload_type or ptime != self.ptime
        self.remote = addr
        self.rtcp_mux = rtcp_mux
        # RFC 3605 a=rtcp may name the port; otherwise RTCP is on RTP port + 1 (RFC 3550 §11).
        self.remote_rtcp = addr if rtcp_mux else (rtcp_addr or (addr[0], addr[1] + 1))
        self.payload_type = payload_type
        self.codec = chosen
        self.dtmf_payload_type = dtmf_pt
        self.ptime = ptime
        self._source = None
        self._rtcp_source = None
        self._candidate = None
        self._latch_hosts = frozenset(h for h in (addr[0], peer_host) if h)
        # Nothing is ever sent to 0.0.0.0 or :: (an RFC 2543 hold): Linux would deliver it to this host.
        self._gated = confirm_first or addr[0] in ("0.0.0.0", "::")
        self._last_rx = self._loop.time()
        self._timed_out = False
        self._set_srtp(srtp)
        if rtcp_mux and self._rtcp_transport is not None:
            # RFC 5761 §5.1.3: with rtcp-mux the separate RTCP port is no longer used.
            self._rtcp_transport.close()
            self._rtcp_transport = None
        if codec_changed:
            law = chosen.law
            fill = 0 if law is None else g711.silence(law)
            frame_bytes = FRAME_MS * chosen.bytes_per_ms
            self._silence = bytes([fill]) * frame_bytes
            self._played_before_ms += self.outbound.played_bytes // self._played_bytes_per_ms
            self._played_bytes_per_ms = chosen.bytes_per_ms
            self.outbound = OutboundBuffer(
                frame_bytes=frame_bytes,
                bytes_per_second=chosen.bytes_per_ms * 1000,
                max_seconds=self._outbound_seconds,
                fill=fill,
            )
            self._set_transcoding(chosen)
            self.jitter = self._new_jitter_buffer()
        self._arm_timer()
        self._log.info(
            "rtp.remote_set", remote=addr, payload_type=payload_type, codec=self.codec, rtcp_mux=rtcp_mux
        )

    def _set_srtp(self, keys: SrtpKeys | None) -> None:
        current = self._srtp
        if keys is None:
            if current is not None:
                self._log.info("rtp.srtp_stopped", suite=current.suite)
            self._srtp = None
        elif current is None:
            self._srtp = SrtpContext(keys)
            self._log.info("rtp.srtp_started", suite=keys.suite.name)
        else:
            outbound, inbound = current.rekey(keys, self._loop.time())
            if outbound or inbound:
                self._log.info("rtp.srtp_rekeyed", suite=keys.suite.name, outbound=outbound, inbound=inbound)

    @property
    def srtp(self) -> SrtpContext | None:
        """The SRTP context while the media is keyed, else None (plain RTP)."""
        return self._srtp

    def set_direction(self, direction: Direction) -> None:
        """Our SDP direction (RFC 3264 §5.1): `sendonly` stops receiving, `recvonly` stops sending, etc."""
        if direction not in ("sendrecv", "sendonly", "recvonly", "inactive"):
            raise ValueError(f"not an SDP direction: {direction!r}")
        if direction != self.direction:
            self._log.info("rtp.direction", direction=direction)
        self.direction = direction
        self._talking = False  # the next audio after hold starts a talk-spurt (marker bit)
        self._last_rx = self._loop.time()
        self._timed_out = False
        if not self.receiving:
            self._hold_since = self._hold_since if self._hold_since is not None else self._last_rx
        else:
            self._hold_since = None
        self._arm_timer()

    def take_frames(self) -> list[Frame]:
        """The frames queued for `frames()` so far, removed: for a consumer switching to `on_frame`."""
        taken: list[Frame] = []
        while not self._frames.empty():
            frame = self._frames.get_nowait()
            if frame is not None:
                taken.append(frame)
        return taken

    @property
    def silence_frames_sent(self) -> int:
        """Ticks that found no queued audio and sent silence (a running count)."""
        return self._silence_sent

    @property
    def sending(self) -> bool:
        """True if our direction lets us send media."""
        return self.direction in ("sendrecv", "sendonly")

    @property
    def receiving(self) -> bool:
        """True if our direction lets us receive media."""
        return self.direction in ("sendrecv", "recvonly")

    @property
    def send_address(self) -> Address | None:
        """Where RTP goes: the latched source with symmetric RTP, else the address from SDP; None while
        `confirm_first` waits for the peer's first RTP."""
        if self.symmetric and self._source is not None:
            return self._source
        if self._gated:
            return None
        return self.remote

    def _set_transcoding(self, codec: Codec) -> None:
        if codec is Codec.G722:
            from voicelive_sip.codecs.g722 import G722Decoder, G722Encoder

            self._encoder, self._decoder = G722Encoder(), G722Decoder()
            self._pcm_concealer = Concealer(None, mode=self._concealment)
        else:
            self._encoder = self._decoder = self._pcm_concealer = None

    def _new_jitter_buffer(self) -> JitterBuffer:
        # With G.722 the buffer holds encoded payloads; what it conceals is replaced after decoding.
        return JitterBuffer(
            Concealer(self.codec.law, mode="silence" if self._decoder is not None else self._concealment),
            clock_rate=CLOCK_RATE,
            frame_samples=self.ptime * CLOCK_RATE // 1000,
            min_wait=self._jitter_min_wait,
            max_wait=self._jitter_max_wait,
        )

    # ----- sending -----------------------------------------------------------------------------------------

    def enqueue(self, payload: bytes) -> int:
        """Queue audio in the leg format (G.711 bytes, or PCM16 for G.722; any length) for the clock; returns
        the bytes accepted (bounded)."""
        accepted = self.outbound.enqueue(payload)
        if accepted < len(payload):
            self._log.warning("media.enqueue_failed", dropped=len(payload) - accepted)
        return accepted

    def clear(self) -> int:
        """Drop queued outbound audio in O(1) (barge-in); returns the bytes dropped."""
        return self.outbound.clear()

    @property
    def played_ms(self) -> int:
        """The playout position: ms of queued (agent) audio sent so far (not silence, padding or DTMF)."""
        return self._played_before_ms + self.outbound.played_bytes // self._played_bytes_per_ms

    @property
    def queued_ms(self) -> int:
        """Agent audio waiting to be sent, in milliseconds (rounded up: anything queued is at least 1)."""
        return -(-len(self.outbound) // self._played_bytes_per_ms)

    @property
    def frame_deadline(self) -> float:
        """Loop time the frame being sent now was due (the clock's slot), 0.0 without a clock."""
        return self.clock.slot_deadline if self.clock is not None else 0.0

    def receive(self, handler: Callable[[bytes], None]) -> None:
        """Hand each received frame's payload to `handler` from now on, starting with those queued so far."""
        for frame in self.take_frames():
            handler(frame.payload)
        self._on_audio = handler

    def send_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        """Send an RFC 4733 event on the next ticks (audio pauses meanwhile); needs a negotiated DTMF PT."""
        if self.dtmf_payload_type is None:
            raise RuntimeError("no telephone-event payload type was negotiated")
        self.dtmf_sender.send(digit, duration_ms)

    def on_tick(self, tick: int) -> None:
        """Called by the media clock every 20 ms: send one packet (audio, silence or DTMF)."""
        if self._last_tick is None:
            self._timestamp_base = (self._timestamp_base - tick * FRAME_SAMPLES) & 0xFFFFFFFF
        elif tick != self._last_tick + 1:
            self._talking = False  # ticks were skipped: the timestamp jumps, so mark the next talk-spurt
        self._last_tick = tick
        # RFC 3550 §5.1: the timestamp follows the sampling clock (160 per 20 ms), whether or not we send.
        timestamp = (self._timestamp_base + tick * FRAME_SAMPLES) & 0xFFFFFFFF
        address = self.send_address
        transport = self._transport
        if address is None or transport is None or not self.sending:
            return
        event = self.dtmf_sender.tick(timestamp) if self.dtmf_sender.active else None
        if event is not None and self.dtmf_payload_type is not None:
            self._send(
                transport, address, self.dtmf_payload_type, event.marker, event.timestamp, event.payload
            )
            self._dtmf_sent += 1
            self._talking = False
            return
        payload = self.outbound.pull()
        if payload is None:
            payload = self._silence
            marker = False
            self._silence_sent += 1
            self._talking = False
        else:
            marker = not self._talking  # RFC 3551 §4.1: first packet of a talk-spurt
            self._talking = True
            if self.on_played is not None:
                self.on_played(payload)
        if self._encoder is not None:
            # Silence goes through the encoder too: the peer's ADPCM decoder tracks our encoder's state.
            payload = self._encoder.encode(payload)
        self._send(transport, address, self.payload_type, marker, timestamp, payload)

    def _send(
        self,
        transport: _UdpTransport,
        address: Address,
        payload_type: int,
        marker: bool,
        timestamp: int,
        payload: bytes,
    ) -> None:
        if transport.get_write_buffer_size() > MAX_SEND_BACKLOG:
            self._send_dropped += 1  # the kernel is not draining: drop rather than queue without bound
            return
        header = build_rtp_header(payload_type, marker, self._sequence, timestamp, self.ssrc)
        self._sequence = (self._sequence + 1) & 0xFFFF
        packet = header + payload
        if self._srtp is not None:
            try:
                packet = self._srtp.protect(packet)
            except SrtpSendError as error:
                self._send_dropped += 1
                self._log.warning("rtp.srtp_send_failed", error=str(error))
                return
        transport.sendto(packet, address)
        self._packets_sent += 1
        self._octets_sent += len(payload)
        self._last_rtp_timestamp = timestamp
        self._last_send_time = self._loop.time()
        self._sent_since_report = True

    # ----- receiving ---------------------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Address) -> None:
        """RTP (and, with rtcp-mux, RTCP) from the network; malformed or foreign packets are counted."""
        if self.rtcp_mux and is_rtcp(data):
            self.rtcp_received(data, addr)
            return
        if self.remote is None or not self.receiving:
            self._ignored += 1  # before the answer, or on hold: not ours to play
            return
        if self._srtp is not None:
            # Before anything else reads the packet: a forged or replayed one must not move latching,
            # statistics or the jitter buffer.
            try:
                data = self._srtp.unprotect(data, self._loop.time())
            except SrtpDropped as dropped:
                self._srtp_dropped(dropped, addr, rtcp=False)
                return
        plain = plain_rtp_header(data)
        if plain is not None:
            payload_type, marker, sequence, timestamp, ssrc = plain
            now = self._loop.time()
            self._receive(payload_type, sequence, timestamp, ssrc, data[RTP_HEADER_SIZE:], marker, addr, now)
        else:
            try:
                packet = RtpPacket.parse(data)
            except RtpParseError:
                self._malformed += 1
                return
            now = self._loop.time()
            self.receive_packet(packet, addr, now)
        if self.clock is not None:
            self.clock.poll(now)  # a slot due while the loop works through a burst of datagrams goes out now

    def receive_packet(self, packet: RtpPacket, addr: Address, now: float) -> None:
        """Process one parsed RTP packet that arrived from `addr` at loop time `now`."""
        self._receive(
            packet.payload_type,
            packet.sequence_number,
            packet.timestamp,
            packet.ssrc,
            packet.payload,
            packet.marker,
            addr,
            now,
        )

    def _receive(
        self,
        payload_type: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
        payload: bytes,
        marker: bool,
        addr: Address,
        now: float,
    ) -> None:
        if payload_type != self.payload_type and payload_type not in (
            self.dtmf_payload_type,
            COMFORT_NOISE_PT,
        ):
            self._foreign += 1
            return
        if not self._accept_source(ssrc, sequence_number, addr, now):
            self._foreign += 1
            return
        self._last_rx = now
        if self._timed_out:
            self._timed_out = False  # media is back: watch for the next silence again
            self._arm_timer()
        sequence = self.reception.update(sequence_number, timestamp, now)
        if sequence is None:
            return
        jitter = self.jitter
        if payload_type == self.payload_type:
            jitter.push(sequence, timestamp, payload, now, marker)
        else:
            # DTMF and comfort noise hold sequence numbers but carry no audio frame: not a loss.
            jitter.push(sequence, timestamp, b"", now)
            if payload_type == self.dtmf_payload_type:
                self.dtmf_receiver.receive(timestamp, payload, now)
                self._drain_dtmf()
        self._drain_frames(now)

    def _accept_source(self, ssrc: int, sequence: int, addr: Address, now: float) -> bool:
        # Strict RTP. The SDP address is believed at once and always wins. Another address is a stranger
        # unless, with symmetric RTP (NAT), it is on the SDP address's host or the signalling peer's and has
        # sent `probation` in-sequence packets of one SSRC; a live source is never dropped for a stranger, and
        # a quiet one only for the continuation of its own stream (NAT rebinding: same SSRC, next numbers).
        source = self._source
        if addr != source:
            if self._allow and not self._allowed(addr[0]):
                return False
            if addr == self.remote:
                if source is not None:
                    self._log.info("rtp.relatched", old=source, new=addr)
                self._source, self._candidate = addr, None
            elif (
                not self.symmetric
                or addr[0] not in self._latch_hosts
                or (
                    source is not None
                    and (ssrc != self._remote_ssrc or now - self._last_rx < self.relatch_after)
                )
                or not self._on_probation(addr, ssrc, sequence)
            ):
                return False
            else:
                if source is not None:
                    self._log.info("rtp.relatched", old=source, new=addr)
                else:
                    self._log.info("rtp.latched", remote=addr, signalled=self.remote)
                self._source, self._candidate = addr, None
            self._gated = False
        if ssrc != self._remote_ssrc:
            old = self._remote_ssrc
            self._remote_ssrc = ssrc
            self.reception.reset(ssrc)
            self.jitter.reset()
            if old is not None:
                self._ssrc_changes += 1
                self._log.info("rtp.ssrc_changed", old=old, new=ssrc)
            self._emit(SsrcChanged(old, ssrc))
        return True

    def _allowed(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._allow)

    def _on_probation(self, addr: Address, ssrc: int, sequence: int) -> bool:
        """Count in-sequence packets of one SSRC from `addr`; True once there were `probation` of them."""
        candidate = self._candidate
        if (
            candidate is not None
            and candidate[:2] == (addr, ssrc)
            and sequence == (candidate[2] + 1) & 0xFFFF
        ):
            count = candidate[3] + 1
        else:
            count = 1
        self._candidate = (addr, ssrc, sequence, count)
        return count >= self.options.probation

    def _drain_frames(self, now: float) -> None:
        jitter = self.jitter
        frame = jitter.pop(now)
        while frame is not None:
            if frame.payload:
                if self._decoder is not None:
                    self._decode(frame)
                self._frames_received += 1
                if self._on_audio is not None:
                    self._on_audio(frame.payload)
                elif self.on_frame is not None:
                    self.on_frame(frame)
                elif not self._put(self._frames, frame):
                    self._frames_dropped += 1
            frame = jitter.pop(now)
        deadline = jitter.get_timer()
        if deadline is not None and (self._timer_at is None or deadline < self._timer_at):
            self._arm_timer(deadline)

    def _decode(self, frame: Frame) -> None:
        # G.722 payload to PCM16 16 kHz, in sequence order (ADPCM state); a concealed slot is made from the
        # last decoded audio instead, and the decoder carries on with the next real packet.
        assert self._decoder is not None and self._pcm_concealer is not None
        if frame.concealed:
            frame.payload = self._pcm_concealer.conceal(len(frame.payload) * 4)
            return
        pcm = self._decoder.decode(frame.payload)
        if not pcm:
            self._malformed += 1
            pcm = self._pcm_concealer.conceal(len(frame.payload) * 4)
        else:
            self._pcm_concealer.good(pcm)
        frame.payload = pcm

    def _drain_dtmf(self) -> None:
        event = self.dtmf_receiver.next_event()
        while event is not None:
            self._log.info("rtp.dtmf", digit=event.digit, duration_ms=event.duration_ms, ended=event.ended)
            self._emit(DtmfReceived(event))
            event = self.dtmf_receiver.next_event()
        deadline = self.dtmf_receiver.get_timer()
        if deadline is not None and (self._timer_at is None or deadline < self._timer_at):
            self._arm_timer(deadline)

    def _emit(self, event: MediaEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)
        elif not self._put(self._events, event):
            self._log.warning("rtp.event_dropped", kind=type(event).__name__)

    @staticmethod
    def _put(queue: asyncio.Queue[Frame | None] | asyncio.Queue[MediaEvent | None], item: object) -> bool:
        # Bounded: when the consumer is slow the oldest item goes, so what is delivered stays current.
        dropped = False
        if queue.full():
            queue.get_nowait()
            dropped = True
        queue.put_nowait(item)  # type: ignore[arg-type]
        return not dropped

    async def frames(self) -> AsyncIterator[Frame]:
        """Received frames in order (after the jitter buffer), until the session closes."""
        while True:
            frame = await self._frames.get()
            if frame is None:
                return
            yield frame

    async def events(self) -> AsyncIterator[MediaEvent]:
        """DTMF, inactivity, SSRC change and BYE events, until the session closes."""
        while True:
            event = await self._events.get()
            if event is None:
                return
            yield event

    def error_received(self, exc: Exception) -> None:
        """ICMP errors (port unreachable while the peer sets up) are normal on UDP: log, carry on."""
        self._log.debug("rtp.socket_error", error=str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        """The socket closed."""

    # ----- timers ------------------------------------------------------------------------------------------

    def _arm_timer(self, deadline: float | None = None) -> None:
        if self._closed:
            return
        candidates = [
            d
            for d in (
                deadline,
                self.jitter.get_timer(),
                self.dtmf_receiver.get_timer(),
                self._idle_deadline(),
            )
            if d is not None
        ]
        if not candidates:
            return
        when = min(candidates)
        if self._timer is not None:
            if self._timer_at is not None and self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._handle_timer)

    def _idle_deadline(self) -> float | None:
        if self.remote is None or self._timed_out:
            return None
        if not self.receiving:
            # On hold nobody sends us media, so silence means nothing; a hold that never ends does.
            if self.hold_timeout is None or self._hold_since is None:
                return None
            return self._hold_since + self.hold_timeout
        if self.inactivity_timeout is None:
            return None
        return self._last_rx + self.inactivity_timeout

    def _handle_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._closed:
            return
        now = self._loop.time()
        self._drain_frames(now)
        self.dtmf_receiver.handle_timer(now)
        self._drain_dtmf()
        idle_deadline = self._idle_deadline()
        if idle_deadline is not None and now >= idle_deadline:
            self._timed_out = True
            if not self.receiving and self._hold_since is not None:
                held = now - self._hold_since
                self._log.warning("media.hold_timeout", held=round(held, 3), remote=self.remote)
                self._emit(MediaTimeout(held, on_hold=True))
            else:
                idle = now - self._last_rx
                self._log.warning("media.timeout", idle=round(idle, 3), remote=self.remote)
                self._emit(MediaTimeout(idle))
        self._arm_timer()

    # ----- RTCP --------------------------------------------------------------------------------------------

    def _schedule_rtcp(self, *, initial: bool = False) -> None:
        # RFC 3550 §6.3.5/A.7: randomise over [0.5, 1.5] of the interval, divided by e - 3/2 to compensate for
        # the reconsideration algorithm's bias; the first report comes after half an interval.
        interval = self.rtcp_interval / 2 if initial else self.rtcp_interval
        delay = interval * self._rng.uniform(0.5, 1.5) / 1.21828
        self._rtcp_timer = self._loop.call_later(delay, self._rtcp_due)

    def _rtcp_due(self) -> None:
        self._rtcp_timer = None
        if self._closed:
            return
        if self.remote is not None:
            self._send_rtcp()
        self._schedule_rtcp()
        self._arm_timer()  # the idle check also wakes up for inactivity while the media is quiet

    def build_rtcp(self, *, bye: bool = False) -> bytes:
        """A compound RTCP packet (RFC 3550 §6.1): SR if we sent RTP since the last report, else RR; SDES."""
        blocks: tuple[ReportBlock, ...] = ()
        lsr = dlsr = 0
        if self._last_sr is not None:
            lsr, arrived = self._last_sr
            dlsr = int((self._loop.time() - arrived) * 65536)  # RFC 3550 §6.4.1: units of 1/65536 s
        block = self.reception.report_block(lsr, dlsr)
        if block is not None:
            blocks = (block,)
        report: RtcpPacket
        if self._sent_since_report:
            rtp_timestamp = (
                self._last_rtp_timestamp + int((self._loop.time() - self._last_send_time) * CLOCK_RATE)
            ) & 0xFFFFFFFF
            report = SenderReport(
                self.ssrc, _ntp_now(), rtp_timestamp, self._packets_sent, self._octets_sent, blocks
            )
        else:
            report = ReceiverReport(self.ssrc, blocks)
        self._sent_since_report = False
        packets: list[RtcpPacket] = [
            report,
            SourceDescription((SdesChunk(self.ssrc, ((1, self.cname.encode()),)),)),
        ]
        if bye:
            packets.append(Bye((self.ssrc,)))
        return serialize_rtcp(packets)

    def _send_rtcp(self, *, bye: bool = False) -> None:
        if self._gated:
            return  # nothing goes to an address that has not sent us RTP yet (see `confirm_first`)
        address = self._rtcp_source if self.symmetric and self._rtcp_source else self.remote_rtcp
        transport = self._transport if self.rtcp_mux else self._rtcp_transport
        if address is None or transport is None:
            return
        packet = self.build_rtcp(bye=bye)
        if self._srtp is not None:
            try:
                packet = self._srtp.protect_rtcp(packet)
            except SrtpSendError as error:
                self._log.warning("rtp.srtp_send_failed", error=str(error), rtcp=True)
                return
        transport.sendto(packet, address)
        self._rtcp_sent += 1

    def rtcp_received(self, data: bytes, addr: Address) -> None:
        """RTCP from the network (the RTCP socket, or demultiplexed under rtcp-mux); SRTCP when keyed."""
        if self._srtp is not None:
            try:
                data = self._srtp.unprotect_rtcp(data, self._loop.time())
            except SrtpDropped as dropped:
                self._srtp_dropped(dropped, addr, rtcp=True)
                return
        try:
            packets = parse_rtcp(data)
        except RtcpParseError:
            self._malformed += 1
            return
        now = self._loop.time()
        self._rtcp_received += 1
        for packet in packets:
            if isinstance(packet, SenderReport | ReceiverReport):
                if self._remote_ssrc is not None and packet.ssrc != self._remote_ssrc:
                    continue
                if self._source is not None and addr[0] == self._source[0]:
                    self._rtcp_source = addr
                    self._last_rx = now  # RTCP shows the peer is alive (silence suppression sends none)
                if isinstance(packet, SenderReport):
                    self._last_sr = ((packet.ntp_timestamp >> 16) & 0xFFFFFFFF, now)
                for block in packet.reports:
                    if block.ssrc == self.ssrc:
                        self._remote_report = block
                        if block.lsr:
                            # RFC 3550 §6.4.1: RTT = A - LSR - DLSR, all in 1/65536 s.
                            arrival = (_ntp_now() >> 16) & 0xFFFFFFFF
                            rtt = ((arrival - block.lsr - block.dlsr) & 0xFFFFFFFF) / 65536
                            if rtt < 60:
                                self._round_trip = rtt
            elif isinstance(packet, UnknownRtcp) and packet.packet_type == RTCP_XR:
                for metrics in parse_voip_metrics(packet.body):
                    if metrics.ssrc == self.ssrc:
                        self._remote_xr = metrics
            elif isinstance(packet, Bye) and self._remote_ssrc in packet.sources:
                reason = packet.reason.decode("utf-8", "replace")
                self._log.info("rtp.bye", ssrc=self._remote_ssrc, reason=reason)
                self._emit(ByeReceived(self._remote_ssrc, reason))

    def _srtp_dropped(self, dropped: SrtpDropped, addr: Address, *, rtcp: bool) -> None:
        """Count a packet that failed SRTP (it is never played) and log it, sampled."""
        if dropped.kind == "auth":
            self._srtp_auth_failures += 1
        elif dropped.kind == "replay":
            self._srtp_replays += 1
        else:
            self._malformed += 1
        now = self._loop.time()
        if now < self._srtp_log_at:
            self._srtp_unlogged += 1  # a flood of forged packets costs one line a second, not one per packet
            return
        self._srtp_log_at = now + SRTP_LOG_INTERVAL
        self._log.warning(
            "rtp.srtp_dropped", kind=dropped.kind, rtcp=rtcp, source=addr, suppressed=self._srtp_unlogged
        )
        self._srtp_unlogged = 0

    # ----- statistics --------------------------------------------------------------------------------------

    @property
    def stats(self) -> RtpSessionStats:
        """A snapshot of all counters (RFC 3550 loss and jitter included)."""
        reception = self.reception.snapshot()
        jitter = self.jitter.stats
        remote = self._remote_report
        return RtpSessionStats(
            packets_sent=self._packets_sent,
            octets_sent=self._octets_sent,
            dtmf_sent=self._dtmf_sent,
            silence_frames_sent=self._silence_sent,
            packets_received=reception.packets_received,
            packets_expected=reception.packets_expected,
            cumulative_lost=reception.cumulative_lost,
            fraction_lost=reception.fraction_lost,
            jitter_ms=reception.jitter_ms,
            frames_received=self._frames_received,
            frames_concealed=jitter.concealed,
            duplicates=jitter.duplicates,
            late=jitter.late,
            malformed=self._malformed,
            foreign=self._foreign,
            ignored=self._ignored,
            frames_dropped=self._frames_dropped,
            ssrc_changes=self._ssrc_changes,
            outbound_dropped_bytes=self.outbound.dropped_bytes,
            send_dropped=self._send_dropped,
            rtcp_sent=self._rtcp_sent,
            rtcp_received=self._rtcp_received,
            remote_fraction_lost=None if remote is None else remote.fraction_lost / 256,
            remote_cumulative_lost=None if remote is None else remote.packets_lost,
            remote_jitter_ms=None if remote is None else 1000 * remote.jitter / CLOCK_RATE,
            round_trip_ms=None if self._round_trip is None else self._round_trip * 1000,
            srtp_suite=None if self._srtp is None else self._srtp.suite,
            srtp_auth_failures=self._srtp_auth_failures,
            srtp_replays=self._srtp_replays,
            concealment_runs=jitter.concealment_runs,
            ptime=self.ptime,
            concealment=self._concealment,
            remote_voip_metrics=self._remote_xr,
        )
