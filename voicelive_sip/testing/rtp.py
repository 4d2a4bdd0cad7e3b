"""Loopback RTP fixtures: two sessions wired to each other, an impairment relay, and an arrival recorder.

All bind 127.0.0.1 only and are async context managers that close every socket and timer they opened.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

from voicelive_sip.rtp.clock import MediaClock
from voicelive_sip.rtp.packet import RtpPacket, RtpParseError
from voicelive_sip.rtp.session import PortPool, RtpSession

__all__ = ["Arrival", "ImpairmentRelay", "RtpLoopback", "RtpRecorder"]

Address = tuple[str, int]
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Arrival:
    """One datagram as it arrived: loop time, bytes and sender."""

    time: float
    data: bytes
    addr: Address

    def rtp(self) -> RtpPacket | None:
        """The datagram parsed as RTP, or None if it is not RTP."""
        try:
            return RtpPacket.parse(self.data)
        except RtpParseError:
            return None


class RtpRecorder(asyncio.DatagramProtocol):
    """A UDP socket on 127.0.0.1 that records every datagram with its arrival time (bounded)."""

    def __init__(self, *, max_arrivals: int = 100_000) -> None:
        self.arrivals: deque[Arrival] = deque(maxlen=max_arrivals)
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()

    @property
    def address(self) -> Address:
        """Where to send datagrams to be recorded."""
        assert self._transport is not None, "use `async with RtpRecorder()`"
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port

    async def __aenter__(self) -> RtpRecorder:
        self._loop = asyncio.get_running_loop()
        await self._loop.create_datagram_endpoint(lambda: self, local_addr=(LOOPBACK, 0))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        assert self._loop is not None
        self.arrivals.append(Arrival(self._loop.time(), data, addr))
        self._changed.set()

    def sendto(self, data: bytes, addr: Address) -> None:
        """Send from the recorder's own socket (to act as a peer)."""
        assert self._transport is not None
        self._transport.sendto(data, addr)

    def packets(self) -> list[RtpPacket]:
        """Every recorded datagram that parses as RTP, in arrival order."""
        return [p for p in (a.rtp() for a in self.arrivals) if p is not None]

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        """Wait until at least `count` datagrams arrived; raises TimeoutError."""
        async with asyncio.timeout(timeout):
            while len(self.arrivals) < count:
                self._changed.clear()
                await self._changed.wait()


class _RelaySide(asyncio.DatagramProtocol):
    def __init__(self, relay: ImpairmentRelay) -> None:
        self._relay = relay

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._relay._received(data, addr)


class ImpairmentRelay:
    """A UDP relay on 127.0.0.1 that drops, delays, reorders and duplicates what it forwards to `target`.

    Replies from `target` go back, unimpaired, to the last client address. The RNG is seeded, so a run is
    repeatable; `dropped`, `duplicated` and `reordered` hold the datagrams affected.
    """

    def __init__(
        self,
        target: Address,
        *,
        loss: float = 0.0,
        delay: float = 0.0,
        jitter: float = 0.0,
        reorder: float = 0.0,
        duplicate: float = 0.0,
        seed: int = 0,
        max_held: int = 10_000,
    ) -> None:
        self.target = target
        self.loss = loss
        self.delay = delay
        self.jitter = jitter
        self.reorder = reorder
        self.duplicate = duplicate
        self.forwarded = 0
        self.dropped: deque[bytes] = deque(maxlen=max_held)
        self.duplicated: deque[bytes] = deque(maxlen=max_held)
        self.reordered: deque[bytes] = deque(maxlen=max_held)
        self._rng = random.Random(seed)
        self._transport: asyncio.DatagramTransport | None = None
        self._client: Address | None = None
        self._held: bytes | None = None
        self._handles: set[asyncio.TimerHandle] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def address(self) -> Address:
        """Where clients send: the relay forwards from here to `target`."""
        assert self._transport is not None, "use `async with ImpairmentRelay(...)`"
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port

    async def __aenter__(self) -> ImpairmentRelay:
        self._loop = asyncio.get_running_loop()
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _RelaySide(self), local_addr=(LOOPBACK, 0)
        )
        self._transport = transport
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def _received(self, data: bytes, addr: Address) -> None:
        if addr == self.target:
            if self._client is not None and self._transport is not None:
                self._transport.sendto(data, self._client)
            return
        self._client = addr
        rng = self._rng
        if rng.random() < self.loss:
            self.dropped.append(data)
            return
        if self._held is None and rng.random() < self.reorder:
            self._held = data  # goes out right after the next datagram: the two swap places
            self.reordered.append(data)
            return
        self._schedule(data)
        if rng.random() < self.duplicate:
            self.duplicated.append(data)
            self._schedule(data)
        if self._held is not None:
            held, self._held = self._held, None
            self._schedule(held)

    def _schedule(self, data: bytes) -> None:
        assert self._loop is not None
        wait = self.delay + (self._rng.uniform(0.0, self.jitter) if self.jitter else 0.0)
        if wait <= 0:
            self._forward(data, None)
            return
        handle: Any = None
        handle = self._loop.call_later(wait, lambda: self._forward(data, handle))
        self._handles.add(handle)

    def _forward(self, data: bytes, handle: asyncio.TimerHandle | None) -> None:
        if handle is not None:
            self._handles.discard(handle)
        if self._transport is not None:
            self._transport.sendto(data, self.target)
            self.forwarded += 1


class RtpLoopback:
    """Two `RtpSession`s on 127.0.0.1 wired to each other (`a` and `b`), driven by one media clock.

    `relay_options` (ImpairmentRelay keyword arguments) put an impairment relay on the a → b path.
    """

    def __init__(
        self,
        *,
        port: int = 40000,
        count: int = 2000,
        codec: str = "PCMU",
        payload_type: int = 0,
        dtmf_pt: int | None = 101,
        clock: MediaClock | None = None,
        relay_options: dict[str, Any] | None = None,
        **session_options: Any,
    ) -> None:
        self.pool = PortPool(LOOPBACK, port, count)
        self.codec = codec
        self.payload_type = payload_type
        self.dtmf_pt = dtmf_pt
        self._own_clock = clock is None
        self.clock = clock if clock is not None else MediaClock()
        self.relay_options = relay_options
        self.session_options = session_options
        self.relay: ImpairmentRelay | None = None
        self._a: RtpSession | None = None
        self._b: RtpSession | None = None

    @property
    def a(self) -> RtpSession:
        """The first session (sends through the relay, if any)."""
        assert self._a is not None, "use `async with RtpLoopback()`"
        return self._a

    @property
    def b(self) -> RtpSession:
        """The second session."""
        assert self._b is not None, "use `async with RtpLoopback()`"
        return self._b

    async def __aenter__(self) -> RtpLoopback:
        try:
            self._a = await RtpSession.open(self.pool, clock=self.clock, **self.session_options)
            self._b = await RtpSession.open(self.pool, clock=self.clock, **self.session_options)
            a_address: Address = (LOOPBACK, self._a.local_port)
            b_address: Address = (LOOPBACK, self._b.local_port)
            if self.relay_options is not None:
                # Both sides talk to the relay, so symmetric RTP latches onto it rather than around it.
                self.relay = await ImpairmentRelay(b_address, **self.relay_options).__aenter__()
                a_address = b_address = self.relay.address
            pt, codec, dtmf_pt = self.payload_type, self.codec, self.dtmf_pt
            self._a.set_remote(b_address, (LOOPBACK, self._b.rtcp_port), pt, codec, dtmf_pt)
            self._b.set_remote(a_address, (LOOPBACK, self._a.rtcp_port), pt, codec, dtmf_pt)
            if self._own_clock:
                self.clock.start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._own_clock:
            await self.clock.stop()
        for session in (self._a, self._b):
            if session is not None:
                session.close()
        if self.relay is not None:
            await self.relay.__aexit__(None, None, None)
            self.relay = None
