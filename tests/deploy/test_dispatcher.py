"""The deployment kit's Kamailio (deploy/kamailio/kamailio.cfg, as it is) in front of gateway processes run
with the kit's settings: calls spread with in-dialog requests through Kamailio, failover when a gateway
dies, drain on SIGTERM, and a full gateway's 503 (issue 16, Proof)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest

from tests.deploy.conftest import Dispatcher, Dispatchers, GatewayProcess, Gateways, media_range, sip_options
from voicelive_sip.aio import CallFailed
from voicelive_sip.errors import LocalProtocolError
from voicelive_sip.testing import PhoneCall, SipPhone

pytestmark = pytest.mark.interop

# What the caller says: 0.6 s of a 1 kHz tone, which the fake Voice Live's VAD takes for a turn.
TONE = np.asarray(0.3 * 32767 * np.sin(2 * np.pi * 1000 * np.arange(4800) / 8000), dtype=np.int16)


def phone() -> SipPhone:
    port, count = media_range(240)
    return SipPhone(media_port=port, media_ports=count)


def heard_agent(call: PhoneCall) -> bool:
    return call.first_audio_time() is not None


async def talk(phone: SipPhone, dispatcher: Dispatcher) -> PhoneCall:
    """A call through Kamailio in which the caller speaks and hears the agent."""
    call = await phone.call(dispatcher.uri, timeout=20)
    call.play_nowait(TONE)
    await call.wait_for(heard_agent, timeout=15)
    return call


async def hang_up(call: PhoneCall) -> None:
    with contextlib.suppress(CallFailed, LocalProtocolError):
        await call.hangup()


def gateway_of(dispatcher: Dispatcher, gateways: Sequence[GatewayProcess]) -> dict[str, str]:
    """The gateway name that took each call, from the gateways' own logs (sip.incoming_call)."""
    return {e["call_id"]: g.name for g in gateways for e in g.events("sip.incoming_call")}


async def test_sixty_calls_spread_over_three_gateways_with_in_dialog_requests_through_kamailio(
    gateways: Gateways, dispatchers: Dispatchers
) -> None:
    gws = await gateways.start_ready(3, GATEWAY_DRAIN_TIMEOUT=1)
    kam = await dispatchers.start([g.uri for g in gws])
    for gateway in gws:
        await kam.wait_for(gateway.uri, "AP")
    limit = asyncio.Semaphore(20)
    kept: list[PhoneCall] = []

    async with phone() as caller:
        phone_source = f"127.0.0.1:{caller.address[1]}"

        async def one(index: int) -> PhoneCall:
            async with limit:
                call = await talk(caller, kam)
                if index % 3 == 0:  # re-INVITEs from the caller: hold and resume
                    await call.hold()
                    await call.unhold()
                await asyncio.sleep(2.0)  # the agent's VAD hears the end of the caller's turn
                if index % 2 == 0:
                    await call.hangup()  # BYE from the caller
                else:
                    kept.append(call)  # BYE from the gateway, below
                return call

        calls = await asyncio.gather(*(one(index) for index in range(60)))
        # Stopping (SIGTERM, GATEWAY_DRAIN_TIMEOUT=1) the gateways hang up the calls still up: BYE from them.
        for gateway in gws:
            gateway.process.popen.send_signal(signal.SIGTERM)
        ended = await asyncio.wait_for(asyncio.gather(*(call.wait_ended() for call in kept)), 30)
    assert len(kept) == 30
    assert {(end.reason, end.by) for end in ended} == {("bye", "remote")}
    for gateway in gws:
        assert await gateways.processes.wait(gateway.process, 30) == 0, gateway.process.output()[-3000:]

    taken = gateway_of(kam, gws)
    spread = Counter(taken[call.call.call_id] for call in calls)
    assert set(spread) == {g.name for g in gws} and max(spread.values()) <= 30, spread

    # Two-way audio: the caller heard the agent (talk), and each gateway's Voice Live heard the caller's turn.
    heard_caller = {e["call_id"] for g in gws for e in g.events("call.transcript") if e["role"] == "caller"}
    assert not [call.call.call_id for call in calls if call.call.call_id not in heard_caller]

    # Kamailio record-routed every call, and the in-dialog requests of both sides went through it.
    kamailio = f"127.0.0.1:{kam.port}"
    for call in calls:
        assert call.call.dialog is not None
        assert [f"{route.uri.host}:{route.uri.port}" for route in call.call.dialog.route_set] == [kamailio]
    relayed = kam.in_dialog()
    gateway_sources = {f"127.0.0.1:{g.sip_port}" for g in gws}
    for index, call in enumerate(calls):
        requests = {(method, source) for method, source in relayed.get(call.call.call_id, [])}
        reinvites = {(method, source) for method, source in requests if method == "INVITE"}
        byes = {source for method, source in requests if method == "BYE"}
        assert reinvites == ({("INVITE", phone_source)} if index % 3 == 0 else set()), (index, requests)
        if index % 2 == 0:
            assert byes == {phone_source}, (index, requests)
        else:
            assert len(byes) == 1 and byes <= gateway_sources, (index, requests)


async def test_a_killed_gateway_loses_no_new_call(gateways: Gateways, dispatchers: Dispatchers) -> None:
    gws = await gateways.start_ready(3)
    victim = gws[2]
    kam = await dispatchers.start([g.uri for g in gws])
    for gateway in gws:
        await kam.wait_for(gateway.uri, "AP")

    async with phone() as caller:

        async def one() -> str:
            call = await caller.call(kam.uri, timeout=20)  # raises CallFailed if the call fails
            await asyncio.sleep(0.5)
            await hang_up(call)  # a call the dead gateway had taken cannot end well: that is not a new call
            return call.call.call_id

        async def wave(count: int, kill_after: int | None = None) -> list[str]:
            tasks = []
            for index in range(count):
                if index == kill_after:
                    os.kill(victim.pid, signal.SIGKILL)
                tasks.append(asyncio.ensure_future(one()))
                await asyncio.sleep(0.1)
            return await asyncio.gather(*tasks)

        before = await wave(30, kill_after=9)  # calls keep arriving, 10 a second, as the gateway dies
        await kam.wait_for(victim.uri, "I")  # inactive: marked at its first timeout, kept so by probing
        after = await wave(15)
        await asyncio.sleep(1)
    assert victim.process.popen.wait(5) == -signal.SIGKILL

    dispatched = kam.dispatched()
    to_victim = [call_id for call_id, uri in dispatched if uri == victim.uri]
    failed_over = [call_id for call_id in to_victim if call_id in before[9:]]
    # Calls did reach the dead gateway and went elsewhere; once it was marked inactive, none reached it.
    assert failed_over, dispatched
    assert len({uri for call_id, uri in dispatched if call_id in failed_over}) >= 2
    assert not set(after) & set(to_victim)
    assert {uri for call_id, uri in dispatched if call_id in after} == {gws[0].uri, gws[1].uri}


async def test_a_draining_gateway_finishes_its_calls_and_takes_no_new_ones(
    gateways: Gateways, dispatchers: Dispatchers
) -> None:
    gws = await gateways.start_ready(3, GATEWAY_DRAIN_TIMEOUT=8)
    kam = await dispatchers.start([g.uri for g in gws])
    for gateway in gws:
        await kam.wait_for(gateway.uri, "AP")
    victim = gws[0]

    async with phone() as caller:
        up = [await talk(caller, kam) for _ in range(6)]
        taken = gateway_of(kam, gws)
        on_victim = [call for call in up if taken[call.call.call_id] == victim.name]
        assert len(on_victim) == 2, taken

        victim.process.popen.send_signal(signal.SIGTERM)
        answer = None
        for _ in range(50):
            answer = await asyncio.to_thread(sip_options, victim.sip_port)
            if answer is not None and answer[0] == 503:
                break
            await asyncio.sleep(0.05)
        assert answer is not None and answer[0] == 503, answer
        assert re.search(r"^Retry-After: *\d+", answer[1], re.MULTILINE | re.IGNORECASE), answer[1]

        # New calls while it drains all succeed: at once, before probing noticed, round robin sends it some,
        # which it refuses with 503 and Kamailio places elsewhere; once probing sees the 503s, none is sent.
        during = await asyncio.gather(*(talk(caller, kam) for _ in range(6)))
        await kam.wait_for(victim.uri, "I")
        after = [await talk(caller, kam) for _ in range(6)]
        # The caller hangs up one; the gateway ends the other at the drain timeout.
        await on_victim[0].hangup()
        ended = await asyncio.wait_for(on_victim[1].wait_ended(), 15)
        assert await gateways.processes.wait(victim.process, 15) == 0
        assert (ended.reason, ended.by) == ("bye", "remote")
        for call in up + during + after:
            if call not in on_victim:
                assert not call.ended, call

    dispatched = kam.dispatched()
    refused = re.findall(r"call (\S+) failed over to gateway \S+ \(503\)", kam.process.output())
    assert {call.call.call_id for call in during} & set(refused), dispatched
    after_ids = {call.call.call_id for call in after}
    assert not [call_id for call_id, uri in dispatched if call_id in after_ids and uri == victim.uri]
    summaries = victim.summaries()
    assert {summaries[call.call.call_id]["end_reason"] for call in on_victim} == {"bye"}, summaries


async def test_a_full_gateway_answers_503_and_kamailio_places_the_call_on_another(
    gateways: Gateways, dispatchers: Dispatchers
) -> None:
    full = gateways.start("gw1", SIP_MAX_CALLS=1)
    others = [gateways.start("gw2"), gateways.start("gw3")]
    gws = [full, *others]
    await asyncio.gather(*(gateways.wait_ready(g) for g in gws))
    # No probing here: the INVITE's own 503 is what moves the call (probing has a test of its own below).
    kam = await dispatchers.start([g.uri for g in gws], defines=["DS_PING_INTERVAL=0"])

    async with phone() as caller:
        calls = [await caller.call(kam.uri, timeout=20) for _ in range(7)]
        taken = gateway_of(kam, gws)
        assert Counter(taken[call.call.call_id] for call in calls)[full.name] == 1, taken
        refused = [call_id for call_id, uri in kam.dispatched() if uri == full.uri][1:]
        assert refused  # round robin came back to it while it was full
        output = kam.process.output()
        for call_id in refused:
            assert re.search(rf"call {re.escape(call_id)} failed over to gateway \S+ \(503\)", output), output
            assert taken[call_id] != full.name
        for call in calls:
            await call.hangup()


async def test_probing_takes_a_full_gateway_out_of_the_set_and_back(
    gateways: Gateways, dispatchers: Dispatchers
) -> None:
    full, other = gateways.start("gw1", SIP_MAX_CALLS=1), gateways.start("gw2")
    await asyncio.gather(gateways.wait_ready(full), gateways.wait_ready(other))
    kam = await dispatchers.start([full.uri, other.uri])
    await kam.wait_for(full.uri, "AP")
    await kam.wait_for(other.uri, "AP")
    async with phone() as caller:
        calls = [await caller.call(kam.uri, timeout=20) for _ in range(2)]
        assert full.options() == 503
        await kam.wait_for(full.uri, "I")
        more = [await caller.call(kam.uri, timeout=20) for _ in range(3)]
        taken = gateway_of(kam, [full, other])
        assert {taken[call.call.call_id] for call in more} == {other.name}
        for call in calls + more:
            if taken[call.call.call_id] == full.name:
                await call.hangup()
        await kam.wait_for(full.uri, "A")
        assert full.options() == 200
