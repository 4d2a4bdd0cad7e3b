"""Two user agents over a lossy loopback: with 30 % of SIP datagrams dropped in both directions, a call is
still set up and torn down (INVITE/200/ACK, BYE/200) by RFC 3261 §17 retransmissions."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from voicelive_sip.aio import IncomingCall, UserAgent
from voicelive_sip.aio.transport import TransportLayer
from voicelive_sip.config import SipSettings
from voicelive_sip.sip.transaction_events import Outgoing

LOSS = 0.3


def _kind(data: bytes) -> str:
    """'INVITE', 'ACK', 'BYE', '200 INVITE'... : what a datagram was, for the drop tally."""
    start = data.split(b"\r\n", 1)[0].decode(errors="replace")
    if not start.startswith("SIP/2.0 "):
        return start.split(" ", 1)[0]
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, _, value = line.decode(errors="replace").partition(":")
        if name.strip().lower() == "cseq":
            return f"{start.split(' ')[1]} {value.split()[-1]}"
    return start.split(" ")[1]


@pytest.fixture
def lossy_udp(monkeypatch: pytest.MonkeyPatch) -> tuple[Counter[str], Counter[str]]:
    """Drop each UDP datagram either user agent sends with probability LOSS (seeded); tally them."""
    rng = random.Random(20261121)
    sent: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    send = TransportLayer.send

    def lossy_send(self: TransportLayer, out: Outgoing) -> None:
        kind = _kind(out.data)
        sent[kind] += 1
        if out.transport == "UDP" and rng.random() < LOSS:
            dropped[kind] += 1
            return
        send(self, out)

    monkeypatch.setattr(TransportLayer, "send", lossy_send)
    return sent, dropped


CALLS = 10


async def test_calls_survive_thirty_percent_loss(lossy_udp: tuple[Counter[str], Counter[str]]) -> None:
    sent, dropped = lossy_udp
    settings = SipSettings(local_address="127.0.0.1", port=0, transports=["udp"], t1=0.05)
    answered: asyncio.Queue[IncomingCall] = asyncio.Queue()

    async def answer_calls(callee: UserAgent) -> None:
        async for call in callee.incoming_calls():
            await call.answer(rtp_port=40000)  # returns once the ACK has arrived
            answered.put_nowait(call)

    async with UserAgent(settings) as callee, UserAgent(settings) as caller:
        app = asyncio.create_task(answer_calls(callee))
        host, port = callee.address
        ends = []
        for _ in range(CALLS):
            call = await caller.call(f"sip:bob@{host}:{port}", rtp_port=40002)
            incoming = await asyncio.wait_for(answered.get(), 30)
            await call.hangup()
            ends.append((await call.wait_ended(), await asyncio.wait_for(incoming.wait_ended(), 30)))
        app.cancel()

    assert {(c.reason, c.by, e.reason, e.by) for c, e in ends} == {("bye", "local", "bye", "remote")}
    # The seed really dropped messages the calls needed, so retransmissions carried them.
    essential = ("INVITE", "200 INVITE", "ACK", "BYE", "200 BYE")
    assert all(dropped[kind] > 0 for kind in essential), (sent, dropped)
