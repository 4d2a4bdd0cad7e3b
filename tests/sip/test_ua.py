"""The asyncio user agent on loopback: two UAs calling each other, and a raw UDP peer for the odd cases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from voicelive_sip.aio import (
    Answered,
    CallEnded,
    CallFailed,
    IncomingCall,
    InfoDtmf,
    MediaUpdated,
    SessionRefreshed,
    TransferRequested,
    UserAgent,
)
from voicelive_sip.config import MediaSettings, SipSettings
from voicelive_sip.sdp import LocalSdpSession, SessionDescription, build_offer
from voicelive_sip.sip import Request, Response, make_response, parse_message


def settings(**overrides: Any) -> SipSettings:
    base: dict[str, Any] = {"port": 0, "local_address": "127.0.0.1", "t1": 0.05}
    base.update(overrides)
    return SipSettings(**base)


Handler = Callable[[IncomingCall], Awaitable[None]]


async def answer(call: IncomingCall) -> None:
    await call.ring()
    await call.answer(rtp_port=41000)


@asynccontextmanager
async def agent(
    handler: Handler | None = answer, *, media: dict[str, Any] | None = None, **overrides: Any
) -> AsyncIterator[UserAgent]:
    """A started UA whose application runs `handler` for every incoming call."""
    ua = UserAgent(settings(**overrides), MediaSettings(**(media or {})))
    await ua.start()
    ua.seen = []  # type: ignore[attr-defined]

    async def app() -> None:
        async for call in ua.incoming_calls():
            ua.seen.append(call)  # type: ignore[attr-defined]
            if handler is not None:
                asyncio.get_running_loop().create_task(_guard(handler(call)))

    task = asyncio.get_running_loop().create_task(app())
    try:
        yield ua
    finally:
        task.cancel()
        await ua.close()


async def _guard(job: Awaitable[None]) -> None:
    with suppress(CallFailed):
        await job


class RawPeer(asyncio.DatagramProtocol):
    """A bare UDP socket that sends SIP bytes and collects what comes back."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Request | Response] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.inbox.put_nowait(parse_message(data))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, ua: UserAgent) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ua.address)

    async def next(
        self, predicate: Callable[[Request | Response], bool] = lambda m: True
    ) -> Request | Response:
        while True:
            message = await asyncio.wait_for(self.inbox.get(), 5)
            if predicate(message):
                return message


@asynccontextmanager
async def raw_peer() -> AsyncIterator[RawPeer]:
    transport, peer = await asyncio.get_running_loop().create_datagram_endpoint(
        RawPeer, local_addr=("127.0.0.1", 0)
    )
    try:
        yield peer
    finally:
        transport.close()


def raw_request(
    method: str, peer: RawPeer, ua: UserAgent, *, branch: str = "z9hG4bKraw1", call_id: str = "raw-1",
    to_tag: str | None = None, cseq: int = 1, headers: str = "", body: bytes = b"",
) -> bytes:  # fmt: skip
    to = f"<sip:bot@127.0.0.1:{ua.address[1]}>" + (f";tag={to_tag}" if to_tag else "")
    head = (
        f"{method} sip:bot@127.0.0.1:{ua.address[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch={branch};rport\r\n"
        f"From: <sip:raw@127.0.0.1>;tag=rawtag\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:raw@127.0.0.1:{peer.port}>\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def is_status(code: int) -> Callable[[Request | Response], bool]:
    return lambda m: isinstance(m, Response) and m.status_code == code


async def test_call_answer_hold_info_and_bye() -> None:
    async with agent() as bob, agent(None) as alice:
        call = await alice.call(f"sip:bob@127.0.0.1:{bob.address[1]}", rtp_port=40000)
        assert call.media is not None and call.media.codec == "G722"  # both sides default to G.722 first
        assert call.media.remote_rtp == ("127.0.0.1", 41000)
        (incoming,) = bob.seen  # type: ignore[attr-defined]
        held = await call.hold()
        assert held is not None and held.local_direction == "sendonly"
        resumed = await call.unhold()
        assert resumed is not None and resumed.local_direction == "sendrecv"
        await call.send_info_dtmf("7")
        await call.hangup()
        assert (await call.wait_ended()).by == "local"
        ended = await asyncio.wait_for(incoming.wait_ended(), 5)
        assert ended == CallEnded("bye", "remote")
        events = [e async for e in incoming.events()]
        kinds = [type(e) for e in events]
        assert kinds[0] is Answered and kinds[-1] is CallEnded
        updates = [e.media for e in events if isinstance(e, MediaUpdated)]
        # One media session throughout: the same port, the peer's hold seen as recvonly then sendrecv again.
        assert [(m.local_direction, m.on_hold) for m in updates] == [("recvonly", True), ("sendrecv", False)]
        assert {m.remote_rtp for m in updates} == {("127.0.0.1", 40000)}
        assert InfoDtmf("7", 160) in events
        assert incoming.local_sdp is not None and incoming.local_sdp.origin.session_version == 3
        assert bob.active_calls == 0 and alice.active_calls == 0


async def test_cancel_before_answer() -> None:
    async def ring_only(call: IncomingCall) -> None:
        await call.ring()

    async with agent(ring_only) as bob, agent(None) as alice:
        call = alice.dial(f"sip:bob@127.0.0.1:{bob.address[1]}", rtp_port=40000)
        ringing = await asyncio.wait_for(anext(call.events()), 5)
        assert ringing.status_code == 180  # type: ignore[union-attr]
        await call.hangup()
        with pytest.raises(CallFailed) as failed:
            await call.answered()
        assert failed.value.status_code == 487
        (incoming,) = bob.seen  # type: ignore[attr-defined]
        assert await asyncio.wait_for(incoming.wait_ended(), 5) == CallEnded("cancelled", "remote", 487)
        with pytest.raises(CallFailed):
            await incoming.answer(rtp_port=41000)


@pytest.mark.parametrize("status", [486, 603, 480])
async def test_reject(status: int) -> None:
    async def reject(call: IncomingCall) -> None:
        await call.reject(status)

    async with agent(reject) as bob, agent(None) as alice:
        with pytest.raises(CallFailed) as failed:
            await alice.call(f"sip:bob@127.0.0.1:{bob.address[1]}", rtp_port=40000)
        assert failed.value.status_code == status


async def test_no_common_codec_is_488() -> None:
    async with agent(media={"codecs": ["PCMU"]}) as bob, agent(None) as alice:
        with pytest.raises(CallFailed) as failed:
            await alice.call(f"sip:bob@127.0.0.1:{bob.address[1]}", rtp_port=40000, codecs=["PCMA"])
        assert failed.value.status_code == 488
        assert bob.seen == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(("busy", "retry_after"), [(486, None), (503, "5")])
async def test_admission_control(busy: int, retry_after: str | None) -> None:
    async with agent(max_calls=1, busy_status=busy) as bob, agent(None) as alice, raw_peer() as peer:
        first = await alice.call(f"sip:bob@127.0.0.1:{bob.address[1]}", rtp_port=40000)
        peer.send(raw_request("INVITE", peer, bob, call_id="second"), bob)
        refused = await peer.next(lambda m: isinstance(m, Response) and m.status_code >= 200)
        assert isinstance(refused, Response) and refused.status_code == busy
        assert refused.headers.get("Retry-After") == retry_after
        await first.hangup()


async def test_inbound_digest_challenge() -> None:
    options = {"inbound_auth_user": "pbx", "inbound_auth_password": "s3cret", "auth_realm": "gw"}
    async with agent(**options) as bob, agent(None) as alice:
        call = await alice.call(
            f"sip:bob@127.0.0.1:{bob.address[1]}", rtp_port=40000, credentials=("pbx", "s3cret")
        )
        await call.hangup()
        with pytest.raises(CallFailed) as failed:
            await alice.call(
                f"sip:bob@127.0.0.1:{bob.address[1]}", rtp_port=40000, credentials=("pbx", "wrong")
            )
        assert failed.value.status_code in (401, 403)
        with pytest.raises(CallFailed) as unauthenticated:
            await alice.call(f"sip:bob@127.0.0.1:{bob.address[1]}", rtp_port=40000)
        assert unauthenticated.value.status_code == 401


async def test_digest_guessing_bans_the_source_even_for_the_right_password_until_the_ban_ends() -> None:
    options = {
        "inbound_auth_user": "pbx", "inbound_auth_password": "s3cret", "auth_realm": "gw",
        "auth_max_failures": 3, "auth_ban_seconds": 0.4,
    }  # fmt: skip
    async with agent(**options) as bob, agent(None) as alice:
        target = f"sip:bob@127.0.0.1:{bob.address[1]}"
        with capture_logs() as logs:
            for guess in ("a", "b", "c"):
                with pytest.raises(CallFailed) as wrong:
                    await alice.call(target, rtp_port=40000, credentials=("pbx", guess))
                assert wrong.value.status_code == 403
            banned_at = asyncio.get_running_loop().time()
            with pytest.raises(CallFailed) as refused:
                await alice.call(target, rtp_port=40000, credentials=("pbx", "s3cret"))
            assert refused.value.status_code == 403  # no challenge, the password is never checked
            assert bob.seen == []  # type: ignore[attr-defined]
        failures = [e for e in logs if e["event"] == "security.auth_failed"]
        assert [(e["source"], e["user"], e["reason"]) for e in failures] == [
            ("127.0.0.1", "pbx", "wrong response")
        ] * 3
        bans = [e for e in logs if e["event"] == "security.banned"]
        assert [(e["source"], e["seconds"], e["failures"]) for e in bans] == [("127.0.0.1", 0.4, 3)]
        assert not any("s3cret" in repr(e) or "response=" in repr(e) for e in logs)
        await asyncio.sleep(max(0.0, banned_at + 0.45 - asyncio.get_running_loop().time()))
        call = await alice.call(target, rtp_port=40000, credentials=("pbx", "s3cret"))
        await call.hangup()


async def test_strangers_and_floods_are_security_events() -> None:
    with capture_logs() as logs:
        async with agent(allow_from=["192.0.2.0/24"]) as bob, raw_peer() as stranger:
            stranger.send(raw_request("OPTIONS", stranger, bob), bob)
            await asyncio.sleep(0.1)
        async with agent(max_requests_per_second=1) as bob, raw_peer() as peer:
            for n in range(3):
                peer.send(raw_request("OPTIONS", peer, bob, branch=f"z9hG4bKflood{n}"), bob)
            await peer.next(is_status(200))
            await asyncio.sleep(0.1)
    denied = [e for e in logs if e["event"] == "security.acl_denied"]
    assert [(e["source"], e["port"]) for e in denied] == [("127.0.0.1", stranger.port)]
    flood = [e for e in logs if e["event"] == "security.flood"]
    assert [(e["source"], e["limit"]) for e in flood] == [("127.0.0.1", 1)]


async def test_allow_list_drops_strangers() -> None:
    async with agent(allow_from=["192.0.2.0/24"]) as bob, agent(None) as alice:
        with pytest.raises(CallFailed) as failed:
            await alice.call(f"sip:bob@127.0.0.1:{bob.address[1]}", rtp_port=40000)
        assert failed.value.status_code == 408  # no answer at all: Timer B
        assert bob.seen == []  # type: ignore[attr-defined]


async def test_options() -> None:
    async with agent() as bob, raw_peer() as peer:
        peer.send(raw_request("OPTIONS", peer, bob), bob)
        ok = await peer.next()
        assert isinstance(ok, Response) and ok.status_code == 200
        assert "INVITE" in ok.allow and "UPDATE" in ok.allow
        assert ok.headers.get("Accept") == "application/sdp" and ok.supported == ["timer"]
        assert ok.to.tag is not None
        assert ok.top_via.rport == peer.port and ok.top_via.received is None


@pytest.mark.parametrize(
    ("method", "headers", "body", "status"),
    [
        ("MESSAGE", "", b"", 405),
        ("FOO", "", b"", 501),
        ("OPTIONS", "Require: 100rel\r\n", b"", 420),
        ("INVITE", "Content-Type: application/unknown\r\n", b"xyz", 415),
        ("INVITE", "Accept: text/plain\r\n", b"", 406),
        ("INVITE", "Session-Expires: 30\r\n", b"", 422),
        ("BYE", "", b"", 481),
    ],
)
async def test_rejections(method: str, headers: str, body: bytes, status: int) -> None:
    async with agent() as bob, raw_peer() as peer:
        to_tag = "nodialog" if method == "BYE" else None
        peer.send(raw_request(method, peer, bob, headers=headers, body=body, to_tag=to_tag), bob)
        response = await peer.next(lambda m: isinstance(m, Response) and m.status_code >= 200)
        assert isinstance(response, Response) and response.status_code == status
        if status in (405, 501):
            assert "INVITE" in response.allow
        if status == 420:
            assert response.headers.get("Unsupported") == "100rel"
        if status == 422:
            assert response.headers.get("Min-SE") == "90"


async def test_malformed_request_gets_400_and_the_ua_carries_on() -> None:
    async with agent() as bob, raw_peer() as peer:
        bad = raw_request("OPTIONS", peer, bob).replace(b"OPTIONS sip:", b"OPTIONS  sip:")
        peer.send(bad, bob)
        response = await peer.next()
        assert isinstance(response, Response) and response.status_code == 400
        peer.send(raw_request("OPTIONS", peer, bob, branch="z9hG4bKagain"), bob)
        assert is_status(200)(await peer.next())


async def test_invite_without_sdp_gets_our_offer_and_the_answer_comes_in_the_ack() -> None:
    answered: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    async def handler(call: IncomingCall) -> None:
        assert call.offer is None
        answered.set_result(await call.answer(rtp_port=41000))

    async with agent(handler) as bob, raw_peer() as peer:
        peer.send(raw_request("INVITE", peer, bob), bob)
        ok = await peer.next(is_status(200))
        assert isinstance(ok, Response)
        offer = SessionDescription.parse(ok.body)
        assert offer.media[0].formats == ("9", "0", "8", "101")  # MEDIA_CODECS in order: G722, PCMU, PCMA
        from voicelive_sip.sdp import answer_offer

        answer_sdp, _ = answer_offer(
            offer, local_address="127.0.0.1", local_port=45000, session=LocalSdpSession()
        )
        ack = raw_request(
            "ACK", peer, bob, branch="z9hG4bKack1", to_tag=ok.to.tag,
            headers="Content-Type: application/sdp\r\n", body=answer_sdp.serialize(),
        )  # fmt: skip
        peer.send(ack, bob)
        media = await asyncio.wait_for(answered, 5)
        assert media is not None and media.remote_rtp == ("127.0.0.1", 45000)  # type: ignore[attr-defined]
        assert media.codec == "PCMU"  # type: ignore[attr-defined]  # the answer's pick (a G.711-only peer)


async def test_missing_ack_ends_the_call_with_bye() -> None:
    failures: asyncio.Queue[CallFailed] = asyncio.Queue()

    async def handler(call: IncomingCall) -> None:
        try:
            await call.answer(rtp_port=41000)
        except CallFailed as error:
            failures.put_nowait(error)

    async with agent(handler) as bob, raw_peer() as peer:
        offer = build_offer(local_address="127.0.0.1", local_port=45000, session=LocalSdpSession())
        invite = raw_request(
            "INVITE", peer, bob, headers="Content-Type: application/sdp\r\n", body=offer.serialize()
        )
        peer.send(invite, bob)
        oks = [await peer.next(is_status(200)) for _ in range(3)]  # retransmitted while no ACK comes
        assert len({m.to.tag for m in oks}) == 1
        bye = await peer.next(lambda m: isinstance(m, Request) and m.method == "BYE")
        assert isinstance(bye, Request) and bye.to.tag == "rawtag"
        error = await asyncio.wait_for(failures.get(), 5)
        assert error.status_code == 408


async def test_large_request_goes_over_tcp() -> None:
    transports: list[str] = []

    async def handler(call: IncomingCall) -> None:
        transports.append(call.transport)
        await call.answer(rtp_port=41000)

    async with agent(handler) as bob, agent(None) as alice:
        pad = [("X-Padding", "x" * 1400)]
        call = await alice.call(f"sip:bob@127.0.0.1:{bob.address[1]}", rtp_port=40000, headers=pad)
        assert transports == ["TCP"]
        await call.hangup()
        ended = await asyncio.wait_for(bob.seen[0].wait_ended(), 5)  # type: ignore[attr-defined]
        assert ended.reason == "bye"


async def test_call_over_tcp_by_uri_parameter() -> None:
    async with agent() as bob, agent(None) as alice:
        call = await alice.call(f"sip:bob@127.0.0.1:{bob.address[1]};transport=tcp", rtp_port=40000)
        assert bob.seen[0].transport == "TCP"  # type: ignore[attr-defined]
        await call.hangup()


async def test_session_timer_refresh_and_expiry() -> None:
    async with agent() as bob, agent(None) as alice:
        call = await alice.call(f"sip:bob@127.0.0.1:{bob.address[1]}", rtp_port=40000)
        incoming = bob.seen[0]  # type: ignore[attr-defined]
        await asyncio.wait_for(_first(incoming, Answered), 5)
        # RFC 4028: the UAC offered 1800 s and, supporting timers, was made the refresher.
        assert call.session_interval == incoming.session_interval == 1800
        assert call.we_refresh and not incoming.we_refresh
        loop = asyncio.get_running_loop()
        assert call.session_timer is not None and incoming.session_timer is not None
        assert call.session_timer.get_timer() - loop.time() == pytest.approx(900, abs=5)
        assert incoming.session_timer.get_timer() - loop.time() == pytest.approx(1768, abs=5)
        await call.refresh_session()  # what the refresher's timer runs at half the interval
        refreshed = await asyncio.wait_for(_first(incoming, SessionRefreshed), 5)
        assert refreshed == SessionRefreshed(1800)
        # Now the refresher goes quiet and the interval is (artificially) short: the other side ends the call.
        call.session_timer.interval = 10**6
        call._arm_session_timer()
        incoming.session_timer.interval = 1
        incoming._arm_session_timer()
        ended = await asyncio.wait_for(call.wait_ended(), 5)
        assert ended.reason == "bye" and ended.by == "remote"
        assert (await incoming.wait_ended()).reason == "session-expired"


async def _first(call: IncomingCall, kind: type) -> object:
    async for event in call.events():
        if isinstance(event, kind):
            return event
    raise AssertionError(f"no {kind.__name__}")


async def test_overlapping_reinvite_is_refused_with_500() -> None:
    async with agent() as bob, raw_peer() as peer:
        offer = build_offer(local_address="127.0.0.1", local_port=45000, session=LocalSdpSession())
        sdp = "Content-Type: application/sdp\r\n"
        peer.send(raw_request("INVITE", peer, bob, headers=sdp, body=offer.serialize()), bob)
        ok = await peer.next(is_status(200))
        tag = ok.to.tag
        peer.send(raw_request("ACK", peer, bob, branch="z9hG4bKa1", to_tag=tag), bob)
        # A re-INVITE without SDP: we offer in the 200 and wait for the answer in its ACK...
        peer.send(raw_request("INVITE", peer, bob, branch="z9hG4bKr1", to_tag=tag, cseq=2), bob)
        await peer.next(is_status(200))
        # ...meanwhile a second re-INVITE arrives: RFC 3261 §14.2 says 500 with Retry-After.
        peer.send(raw_request("INVITE", peer, bob, branch="z9hG4bKr2", to_tag=tag, cseq=3), bob)
        refused = await peer.next(is_status(500))
        assert isinstance(refused, Response) and refused.headers.get("Retry-After") is not None
        old = raw_request("INFO", peer, bob, branch="z9hG4bKold", to_tag=tag, cseq=2)
        peer.send(old, bob)
        assert is_status(500)(await peer.next(lambda m: isinstance(m, Response) and m.cseq.method == "INFO"))


async def test_merged_request_is_482_and_zero_max_forwards_is_483() -> None:
    async def ring_only(call: IncomingCall) -> None:
        await call.ring()

    async with agent(ring_only) as bob, raw_peer() as peer:
        peer.send(raw_request("INVITE", peer, bob, branch="z9hG4bKfork1"), bob)
        await peer.next(is_status(180))
        # The same request (Call-ID, From tag, CSeq) again on another branch: it forked and looped back.
        peer.send(raw_request("INVITE", peer, bob, branch="z9hG4bKfork2"), bob)
        assert is_status(482)(await peer.next(lambda m: isinstance(m, Response) and m.status_code >= 200))
        hops = raw_request("INVITE", peer, bob, branch="z9hG4bKmf", call_id="mf").replace(
            b"Max-Forwards: 70", b"Max-Forwards: 0"
        )
        peer.send(hops, bob)
        assert is_status(483)(await peer.next(lambda m: isinstance(m, Response) and m.status_code >= 200))


async def test_redirect_is_followed_once() -> None:
    async with agent() as bob, agent(None) as alice, raw_peer() as redirector:
        call = alice.dial(f"sip:someone@127.0.0.1:{redirector.port}", rtp_port=40000)
        invite = await redirector.next()
        assert isinstance(invite, Request) and invite.method == "INVITE"
        moved = make_response(invite, 302, to_tag="r1")
        moved.headers.add("Contact", f"<sip:bob@127.0.0.1:{bob.address[1]}>")
        assert redirector.transport is not None
        redirector.transport.sendto(moved.serialize(), alice.address)
        media = await asyncio.wait_for(call.answered(), 5)
        assert media is not None and bob.seen  # type: ignore[attr-defined]
        ack = await redirector.next()
        assert isinstance(ack, Request) and ack.method == "ACK"  # the 302 was acknowledged
        await call.hangup()


async def test_unanswered_outgoing_call_is_cancelled_on_timeout() -> None:
    async def ring_only(call: IncomingCall) -> None:
        await call.ring()

    async with agent(ring_only) as bob, agent(None) as alice:
        with pytest.raises(CallFailed) as failed:
            await alice.call(f"sip:bob@127.0.0.1:{bob.address[1]}", rtp_port=40000, timeout=0.5)
        assert failed.value.status_code == 408
        (incoming,) = bob.seen  # type: ignore[attr-defined]
        assert (await asyncio.wait_for(incoming.wait_ended(), 5)).reason == "cancelled"


async def test_tcp_framing_error_closes_only_that_connection() -> None:
    async with agent() as bob:
        reader, writer = await asyncio.open_connection(*bob.address)
        writer.write(b"OPTIONS sip:bot@127.0.0.1 SIP/2.0\r\nContent-Length: -5\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the UA
        writer.close()
        reader, writer = await asyncio.open_connection(*bob.address)
        options = (
            b"OPTIONS sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKtcp\r\n"
            b"From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:bot@127.0.0.1>\r\n"
            b"Call-ID: tcp1\r\nCSeq: 1 OPTIONS\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        writer.write(options)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"SIP/2.0 200 OK")
        writer.close()


async def test_idle_tcp_connections_are_closed() -> None:
    async with agent(tcp_idle_timeout=0.2) as bob:
        reader, writer = await asyncio.open_connection(*bob.address)
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()


async def test_incoming_refer_is_accepted_and_reported_by_notify() -> None:
    async with agent() as bob, agent(None) as alice:
        call = await alice.call(f"sip:bob@127.0.0.1:{bob.address[1]}", rtp_port=40000)
        incoming = bob.seen[0]  # type: ignore[attr-defined]
        await asyncio.wait_for(_first(incoming, Answered), 5)
        transfer = asyncio.ensure_future(incoming.refer("sip:carol@192.0.2.30"))
        async for event in call.events():
            if isinstance(event, TransferRequested):
                assert event.target == "sip:carol@192.0.2.30" and event.referred_by is not None
                await call.notify_transfer(100)
                await call.notify_transfer(200)
                break
        assert await asyncio.wait_for(transfer, 5) == 200
        await call.hangup()


async def test_a_reinvite_refused_491_for_glare_is_sent_again_after_the_back_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from voicelive_sip.sip.glare import ReofferAttempts

    waits: list[tuple[int, float]] = []

    class ShortWait(ReofferAttempts):
        """The RFC 3261 §14.1 decision as is, with a 50 ms wait instead of 2.1-4 s (tested in test_glare)."""

        def retry_at(self, status_code: int, now: float) -> float | None:
            at = super().retry_at(status_code, now)
            waits.append((status_code, -1.0 if at is None else at - now))
            return None if at is None else now + 0.05

    monkeypatch.setattr("voicelive_sip.aio.call.ReofferAttempts", ShortWait)
    async with agent() as bob, agent(None) as alice:
        call = await alice.call(f"sip:bob@127.0.0.1:{bob.address[1]}", rtp_port=40000)
        incoming = bob.seen[0]  # type: ignore[attr-defined]
        await asyncio.wait_for(_first(incoming, Answered), 5)
        assert call.dialog is not None and incoming.dialog is not None
        # Bob is sending a re-INVITE of his own (glare): Alice's gets 491 until he is done, 20 ms later.
        incoming.dialog.begin_outgoing_invite()
        asyncio.get_running_loop().call_later(0.02, incoming.dialog.end_outgoing_invite)
        seq_before = call.dialog.local_seq
        held = await asyncio.wait_for(call.hold(), 5)
        assert held is not None and held.local_direction == "sendonly"
        # The caller owns the Call-ID, so RFC 3261 §14.1 asked for 2.1-4 s; then one retry with a new CSeq.
        assert len(waits) == 1 and waits[0][0] == 491 and 2.1 <= waits[0][1] <= 4.0
        assert call.dialog.local_seq == seq_before + 2
        await call.hangup()


@pytest.mark.parametrize("missing", ["From", "Call-ID", "CSeq"])
async def test_a_request_without_a_mandatory_header_gets_a_stateless_400_and_leaves_no_transaction(
    missing: str,
) -> None:
    async with agent() as bob, raw_peer() as peer:
        invite = raw_request("INVITE", peer, bob, call_id="broken", body=b"")
        lines = [line for line in invite.split(b"\r\n") if not line.startswith(missing.encode() + b":")]
        peer.send(b"\r\n".join(lines), bob)
        refused = await peer.next(lambda m: isinstance(m, Response))
        assert isinstance(refused, Response) and refused.status_code == 400
        assert f"Missing {missing}" in refused.reason or missing in (refused.headers.get("Warning") or "")
        assert refused.to.tag is not None
        assert len(bob._endpoint.layer) == 0  # nothing for Timer H/I to end, nothing to leak
        # The user agent goes on: a well-formed request right after is served.
        peer.send(raw_request("OPTIONS", peer, bob, branch="z9hG4bKnext"), bob)
        ok = await peer.next(is_status(200))
        assert isinstance(ok, Response)
        assert bob.seen == []  # type: ignore[attr-defined]


async def test_an_invite_whose_sdp_names_a_multicast_address_gets_488() -> None:
    sdp = (
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 224.0.0.251\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 0\r\n"
    )
    async with agent() as bob, raw_peer() as peer:
        invite = raw_request("INVITE", peer, bob, headers="Content-Type: application/sdp\r\n", body=sdp)
        peer.send(invite, bob)
        refused = await peer.next(lambda m: isinstance(m, Response) and m.status_code >= 200)
        assert isinstance(refused, Response) and refused.status_code == 488
        assert "multicast" in (refused.headers.get("Warning") or "")
        assert bob.seen == []  # type: ignore[attr-defined]


async def test_a_bye_flood_to_unknown_dialogs_gets_few_481s_and_real_requests_still_get_answers() -> None:
    async with agent(max_unknown_dialog_answers=5) as bob, raw_peer() as peer:
        for n in range(40):
            bye = raw_request("BYE", peer, bob, branch=f"z9hG4bKbye{n}", to_tag="gone", call_id=f"x{n}")
            peer.send(bye, bob)
        peer.send(raw_request("OPTIONS", peer, bob, branch="z9hG4bKreal"), bob)
        await asyncio.sleep(0.3)
        answered = [peer.inbox.get_nowait() for _ in range(peer.inbox.qsize())]
        statuses = [m.status_code for m in answered if isinstance(m, Response)]
        assert 200 in statuses  # the real request is served
        assert 1 <= statuses.count(481) <= 6  # the budget of a second (and a refill), not forty
        assert len(bob._endpoint.layer) <= 7  # the dropped ones left no transaction behind


async def test_a_flooding_source_is_banned_and_its_later_requests_are_dropped() -> None:
    with capture_logs() as logs:
        async with agent(max_packets_per_source=10, flood_ban_seconds=30) as bob, raw_peer() as peer:
            for n in range(30):
                peer.send(raw_request("OPTIONS", peer, bob, branch=f"z9hG4bKf{n}"), bob)
            await asyncio.sleep(0.2)
            answers = peer.inbox.qsize()
            peer.send(raw_request("OPTIONS", peer, bob, branch="z9hG4bKlater"), bob)
            await asyncio.sleep(0.2)
            assert answers <= 10 and peer.inbox.qsize() == answers  # banned: nothing more answered
    bans = [e for e in logs if e["event"] == "security.banned"]
    assert [(e["source"], e["reason"], e["seconds"]) for e in bans] == [("127.0.0.1", "flood", 30.0)]


async def test_half_open_invites_from_one_source_are_limited() -> None:
    async with agent(None, max_pending_invites_per_source=2) as bob, raw_peer() as peer:
        for n in range(3):  # the application never answers: every INVITE stays pending
            peer.send(raw_request("INVITE", peer, bob, branch=f"z9hG4bKp{n}", call_id=f"p{n}"), bob)
        busy = await peer.next(is_status(486))
        assert isinstance(busy, Response) and busy.call_id == "p2"
        assert bob.active_calls == 2


async def test_a_challenge_nobody_can_read_fails_the_call_instead_of_the_user_agent() -> None:
    async with agent(None) as alice, raw_peer() as peer:
        dialling = asyncio.ensure_future(
            alice.call(f"sip:x@127.0.0.1:{peer.port}", rtp_port=40000, credentials=("u", "p"))
        )
        invite = await peer.next(lambda m: isinstance(m, Request) and m.method == "INVITE")
        assert isinstance(invite, Request)
        garbage = make_response(invite, 401, to_tag="t", headers=[("WWW-Authenticate", 'Digest ,,,="')])
        assert peer.transport is not None
        peer.transport.sendto(garbage.serialize(), alice.address)
        with pytest.raises(CallFailed) as failed:
            await asyncio.wait_for(dialling, 5)
        assert failed.value.status_code == 401


async def test_a_new_call_offering_the_unspecified_address_gets_488() -> None:
    sdp = b"v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    async with agent() as bob, raw_peer() as peer:
        invite = raw_request("INVITE", peer, bob, headers="Content-Type: application/sdp\r\n", body=sdp)
        peer.send(invite, bob)
        refused = await peer.next(lambda m: isinstance(m, Response) and m.status_code >= 200)
        assert isinstance(refused, Response) and refused.status_code == 488


async def test_a_cancel_flood_for_invites_we_never_saw_gets_few_481s_and_leaves_no_transactions() -> None:
    async with agent(max_unknown_dialog_answers=5) as bob, raw_peer() as peer:
        for n in range(40):
            peer.send(raw_request("CANCEL", peer, bob, branch=f"z9hG4bKc{n}", call_id=f"c{n}"), bob)
        await asyncio.sleep(0.3)
        answered = [peer.inbox.get_nowait() for _ in range(peer.inbox.qsize())]
        statuses = [m.status_code for m in answered if isinstance(m, Response)]
        assert 1 <= statuses.count(481) <= 6
        assert len(bob._endpoint.layer) <= 7


async def test_an_outgoing_calls_invite_state_is_kept_only_while_the_call_lasts() -> None:
    async with agent() as bob, agent(None) as alice:
        for _ in range(3):
            call = await alice.call(f"sip:bob@127.0.0.1:{bob.address[1]}", rtp_port=40000)
            assert call.call_id in alice._outgoing._invites  # a late 2xx copy still gets its ACK
            await call.hangup()
            assert call.task is not None
            await asyncio.wait_for(call.task, 5)
        assert alice._outgoing._invites == {}
