"""BrowserCalls: WHIP signalling (RFC 9725) at `/whip` and the browser phone at `/phone`, on the gateway's
HTTP server; each call a `CallSession` like a SIP call's, over aiortc (ICE, DTLS-SRTP, Opus).

`POST /whip` with an SDP offer (`application/sdp`, ICE candidates gathered: no trickle) answers `201 Created`
with the SDP answer and a `Location`; `DELETE` that location ends the call. Voice Live is connected while
aiortc builds the answer, so a call the service cannot carry gets 503 at once, not a silent page. The call
then waits for ICE and DTLS (WEBRTC_ICE_TIMEOUT), greets, and runs until DELETE, hang-up, the connection
failing, no audio for WEBRTC_MEDIA_TIMEOUT, or WEBRTC_MAX_CALL_DURATION. Browser calls count to
SIP_MAX_CALLS with the SIP calls. The page talks to the call over a data channel named `events`: transcript
lines, turn timings and the end come from us; keypad presses and hang-up go to us.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import secrets
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

import aioice.ice
from aiohttp import web
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from .._logger import get_logger
from .._tasks import TaskSet
from ..bridge import CallSession, voicelive_for
from ..call_api import bearer_ok, require_token
from ..call_events import BargedIn, SessionFinished, ToolCalled, TranscriptLine, TurnLatency
from ..codecs.names import Codec
from ..config import DTMF_KEYS, WebRtcSettings
from ..errors import VoiceLiveSipError
from ..sdp import SdpError, SessionDescription
from ..voicelive import VoiceLiveError
from .leg import BrowserLeg
from .signalling import BrowserCall

if TYPE_CHECKING:
    from ..gateway import Gateway

__all__ = ["BrowserCalls", "check_offer"]

log = get_logger("voicelive_sip.webrtc")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OFFER_READ_TIMEOUT = 10.0  # seconds for the offer's body to arrive
MAX_OUTBOX = 64  # messages held for a page whose data channel is not open yet
MAX_CHANNEL_MESSAGE = 1024  # what the page may send over the data channel (a key, a hang-up)
NO_STORE = {"Cache-Control": "no-store"}
# No Referer from the page (a ?token= may be in its URL); its type as sent.
PAGE_HEADERS = {**NO_STORE, "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}

# aioice gathers host candidates on every interface but loopback; WEBRTC_ICE_ADDRESSES narrows (or widens,
# to 127.0.0.1) that set. aioice has no per-connection option, so the process's gateway decides for all.
_ice_addresses: list[str] = []
_default_host_addresses = aioice.ice.get_host_addresses


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if not _ice_addresses:
        return list(_default_host_addresses(use_ipv4, use_ipv6))
    return [a for a in _ice_addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


aioice.ice.get_host_addresses = _host_addresses


class OfferRefused(VoiceLiveSipError):
    """An offer we cannot answer: the HTTP status and a reason for the person or program that sent it."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def check_offer(body: bytes) -> None:
    """Refuse an offer that is not SDP (400) or carries no Opus audio we could answer (415)."""
    try:
        offer = SessionDescription.parse(body)
    except SdpError as error:
        raise OfferRefused(400, f"the offer is not valid SDP: {error}") from None
    audio = [m for m in offer.media if m.media == "audio" and m.port != 0]
    if not audio:
        raise OfferRefused(415, "the offer has no audio stream (m=audio)")
    if not any(r.encoding_name.lower() == "opus" for m in audio for r in m.rtpmaps):
        raise OfferRefused(415, "the offer's audio has no Opus (opus/48000/2)")
    if not any("SAVPF" in m.proto or "SAVP" in m.proto for m in audio):
        raise OfferRefused(415, "the offer's audio is not DTLS-SRTP (UDP/TLS/RTP/SAVPF)")


@dataclass(eq=False)
class _Browser:
    """One browser call, from the answered offer to its end."""

    id: str
    call: BrowserCall
    leg: BrowserLeg
    pc: RTCPeerConnection
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    channel: Any = None
    session: CallSession | None = None
    limit: asyncio.TimerHandle | None = None
    first_audio_sent: bool = False
    # Messages for the page before its data channel is open (SCTP comes up after DTLS), oldest dropped.
    outbox: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_OUTBOX))


class BrowserCalls:
    """The `/whip` and `/phone` routes of one gateway, and its browser calls."""

    def __init__(self, gateway: Gateway, settings: WebRtcSettings, *, token: str | None) -> None:
        self.gateway = gateway
        self.settings = settings
        self._token = token.encode() if token else None
        self.calls: dict[str, _Browser] = {}
        self._tasks = TaskSet()
        gateway.ua.other_calls = lambda: len(self.calls)
        _ice_addresses[:] = settings.ice_addresses

    @property
    def connecting(self) -> int:
        """Calls answered whose ICE/DTLS is not up yet (WEBRTC_MAX_PENDING)."""
        return sum(1 for b in self.calls.values() if not b.connected.is_set())

    def check_bind(self, host: str) -> None:
        """A token is required unless the server listens on loopback only: StartupError otherwise."""
        require_token(host, self._token, "browser calls (WEBRTC_ENABLED) would be taken on")

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/whip", self._guarded(self._post))
        app.router.add_route("OPTIONS", "/whip", self._guarded(self._options))
        app.router.add_delete("/whip/{id}", self._guarded(self._delete))
        app.router.add_get("/phone", self._page)

    async def close(self) -> None:
        """End every browser call (the gateway is stopping) and wait for them."""
        for browser in list(self.calls.values()):
            browser.call.end("shutdown", "local")
        await self._tasks.wait()

    # -- HTTP ----------------------------------------------------------------------------------------------
    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not bearer_ok(request, self._token):
                log.warning("security.whip_unauthorized", remote=request.remote)
                return _text(401, "a valid bearer token is required (Authorization: Bearer ...)",
                             {"WWW-Authenticate": 'Bearer realm="voicelive-sip"'})  # fmt: skip
            try:
                return await handler(request)
            except OfferRefused as refused:
                log.info("webrtc.offer_refused", status=refused.status, reason=refused.reason)
                headers = {"Retry-After": "5"} if refused.status == 503 else None
                return _text(refused.status, refused.reason, headers)

        return guarded

    async def _page(self, request: web.Request) -> web.Response:
        html = resources.files(__package__).joinpath("phone.html").read_bytes()
        return web.Response(body=html, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS)

    async def _post(self, request: web.Request) -> web.Response:
        if request.content_type != "application/sdp":
            raise OfferRefused(415, "send the offer as Content-Type: application/sdp")
        limit = self.settings.max_offer_bytes
        if request.content_length is not None and request.content_length > limit:
            raise OfferRefused(413, f"the offer may be at most {limit} bytes")
        try:
            async with asyncio.timeout(OFFER_READ_TIMEOUT):  # a slow body holds a connection, nothing more
                body = await request.content.read(limit + 1)
        except TimeoutError:
            raise OfferRefused(408, "the offer did not arrive in time") from None
        if len(body) > limit:
            raise OfferRefused(413, f"the offer may be at most {limit} bytes")
        check_offer(body)
        refusal = self.gateway.ua.unavailable() if self.gateway.started else ("not started", 5)
        if refusal is not None:
            raise OfferRefused(503, f"the gateway is not taking calls ({refusal[0]})")
        if self.connecting >= self.settings.max_pending:
            raise OfferRefused(503, "too many browser calls are connecting; try again")
        return await self._answer(body.decode("utf-8", "replace"), request)

    async def _options(self, request: web.Request) -> web.Response:
        """The ICE servers to use, as RFC 9725 §4.6 `Link: <url>; rel="ice-server"` headers (behind the
        token: TURN credentials are in them), so the page and other WHIP clients need no settings."""
        response = web.Response(status=204, headers={"Accept-Post": "application/sdp", **NO_STORE})
        for link in self.ice_links():
            response.headers.add("Link", link)
        return response

    def ice_links(self) -> list[str]:
        """WEBRTC_ICE_SERVERS as Link header values, with the TURN username and credential when set."""
        s = self.settings
        links = []
        for url in s.ice_servers:
            link = f'<{url}>; rel="ice-server"'
            if url.lower().startswith("turn") and s.ice_username and s.ice_credential is not None:
                credential = s.ice_credential.get_secret_value()
                link += f'; username="{_quoted(s.ice_username)}"; credential="{_quoted(credential)}"'
                link += '; credential-type="password"'
            links.append(link)
        return links

    async def _delete(self, request: web.Request) -> web.Response:
        browser = self.calls.get(request.match_info["id"])
        if browser is None:
            return _text(404, "no such call")
        browser.call.end("delete", "remote")
        return web.Response(status=200, headers=NO_STORE)

    # -- a call --------------------------------------------------------------------------------------------
    async def _answer(self, offer: str, request: web.Request) -> web.Response:
        gateway, settings = self.gateway, self.gateway.settings
        loop = asyncio.get_running_loop()
        started = loop.time()
        call_id = secrets.token_urlsafe(12)
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        source = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else ("unknown", 0)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self._ice_servers()))
        leg = BrowserLeg(
            outbound_seconds=settings.media.outbound_buffer_seconds, media_timeout=self.settings.media_timeout
        )
        browser = _Browser(call_id, BrowserCall(call_id, source), leg, pc)
        self.calls[call_id] = browser
        voicelive, runner, builtins = voicelive_for(
            settings, gateway.tools, Codec.OPUS, gateway.credential, call_id
        )
        connecting = asyncio.ensure_future(voicelive.connect())
        try:
            answer = await self._negotiate(browser, offer)
            await connecting
        except VoiceLiveError as error:
            gateway.voicelive_outcome(error)
            await self._free(browser, voicelive)
            raise OfferRefused(503, "Voice Live is unavailable") from None
        except OfferRefused:
            connecting.cancel()
            await self._free(browser, voicelive)
            raise
        except Exception as error:
            connecting.cancel()
            await self._free(browser, voicelive)
            log.warning("webrtc.offer_failed", call_id=call_id, error=repr(error))
            raise OfferRefused(400, f"the offer could not be answered: {error}") from None
        except BaseException:
            # The client went away mid-answer (the request was cancelled): free the call all the same.
            connecting.cancel()
            self._tasks.spawn(self._free(browser, voicelive), name="webrtc.free")
            raise
        gateway.voicelive_outcome(None)
        log.info("webrtc.offer_answered", call_id=call_id, remote=source[0])
        self._tasks.spawn(
            self._carry(browser, voicelive, runner, builtins, started), name="webrtc.call"
        )  # fmt: skip
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"/whip/{call_id}", **NO_STORE},
        )

    async def _negotiate(self, browser: _Browser, offer: str) -> str:
        pc, leg = browser.pc, browser.leg

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                leg.attach(track, pc)

        @pc.on("datachannel")
        def on_channel(channel: Any) -> None:
            if channel.label == "events" and browser.channel is None:
                browser.channel = channel
                channel.on("message", lambda message: self._from_page(browser, message))
                channel.on("open", lambda: self._flush(browser))
                self._flush(browser)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            if state == "connected":
                browser.connected.set()
            elif state in ("failed", "closed"):
                browser.call.end("ice-failed" if state == "failed" else "closed", "remote")

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        audio = next((t for t in pc.getTransceivers() if t.kind == "audio"), None)
        if audio is None:
            raise OfferRefused(415, "the offer has no audio stream (m=audio)")
        opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.name.lower() == "opus"]
        audio.setCodecPreferences(opus)
        if not leg.decode_inline(audio.receiver):
            log.info("webrtc.decoding_on_aiortc_thread", call_id=browser.id)
        audio.direction = "sendrecv"
        audio.sender.replaceTrack(leg.track)
        await pc.setLocalDescription(await pc.createAnswer())
        return self._announce(pc.localDescription.sdp)

    def _announce(self, sdp: str) -> str:
        """Host candidates under WEBRTC_ICE_PUBLIC_ADDRESS (1:1 NAT) instead of the local address."""
        public = self.settings.ice_public_address
        if public is None:
            return sdp
        lines = []
        for line in sdp.split("\r\n"):
            if line.startswith("a=candidate:") and " typ host" in line:
                parts = line.split(" ")
                if len(parts) > 5 and _is_ip(parts[4]):
                    parts[4] = public
                line = " ".join(parts)
            elif line.startswith("c=IN IP"):
                line = f"c=IN IP{6 if ':' in public else 4} {public}"
            lines.append(line)
        return "\r\n".join(lines)

    async def _carry(
        self, browser: _Browser, voicelive: Any, runner: Any, builtins: Any, started: float
    ) -> None:
        gateway, call = self.gateway, browser.call
        try:
            async with asyncio.timeout(self.settings.ice_timeout):
                waiter = asyncio.ensure_future(browser.connected.wait())
                ended = asyncio.ensure_future(call.wait_ended())
                try:
                    await asyncio.wait([waiter, ended], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                    ended.cancel()
        except TimeoutError:
            log.warning("webrtc.ice_timeout", call_id=browser.id, timeout_s=self.settings.ice_timeout)
            call.end("ice-timeout", "local")
        if call.ended:
            await self._free(browser, voicelive)
            return
        loop = asyncio.get_running_loop()
        browser.limit = loop.call_later(self.settings.max_call_duration, call.end, "max-duration", "local")
        try:
            session = CallSession.for_leg(
                call, browser.leg, voicelive, gateway.settings, runner, builtins,
                on_dtmf=gateway.on_dtmf, on_recording=gateway.on_recording, metrics=gateway.metrics,
                started=started,
            )  # fmt: skip
        except BaseException:
            call.end("failed", "local")
            await self._free(browser, voicelive)
            raise
        browser.session = session
        relay = asyncio.ensure_future(self._to_page(browser, session))
        try:
            await gateway.carry(session)
        finally:
            await asyncio.wait([relay], timeout=1.0)
            relay.cancel()
            call.end("bye", "local")
            await self._free(browser, None)

    async def _free(self, browser: _Browser, voicelive: Any) -> None:
        """Everything a browser call holds, given back: the connection, the leg, Voice Live, its slot."""
        if browser.limit is not None:
            browser.limit.cancel()
        browser.call.end("failed", "local")
        browser.leg.close()
        if voicelive is not None:
            await voicelive.close()
        with contextlib.suppress(Exception):
            await browser.pc.close()
        self.calls.pop(browser.id, None)

    # -- the page's data channel ---------------------------------------------------------------------------
    def _from_page(self, browser: _Browser, message: Any) -> None:
        if not isinstance(message, str) or len(message) > MAX_CHANNEL_MESSAGE:
            return
        try:
            data = json.loads(message)
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        if data.get("type") == "dtmf" and isinstance(data.get("digit"), str):
            digit = data["digit"].upper()
            if len(digit) == 1 and digit in DTMF_KEYS:
                browser.call.press(digit)
        elif data.get("type") == "hangup":
            browser.call.end("bye", "remote")

    async def _to_page(self, browser: _Browser, session: CallSession) -> None:
        s = session.summary
        self._send(
            browser, {"type": "answered", "call_id": browser.id, "answer_ms": _ms(s.answered_after_ms)}
        )
        async for event in session.events():
            if isinstance(event, TranscriptLine):
                self._send(browser, {"type": "transcript", "role": event.role, "text": event.text,
                                     "at": round(event.at, 2), "interrupted": event.interrupted})  # fmt: skip
            elif isinstance(event, TurnLatency):
                self._send(browser, {"type": "turn", "total_ms": _ms(event.total_ms),
                                     "service_ms": _ms(event.service_ms), "gateway_ms": _ms(event.gateway_ms),
                                     "tool_ms": _ms(event.tool_ms)})  # fmt: skip
            elif isinstance(event, BargedIn):
                self._send(browser, {"type": "barge_in", "heard_ms": event.heard_ms})
            elif isinstance(event, ToolCalled):
                self._send(
                    browser, {"type": "tool", "name": event.name, "duration_ms": _ms(event.duration_ms)}
                )
            elif isinstance(event, SessionFinished):
                self._send(browser, {"type": "ended", "reason": event.end_reason, "by": event.ended_by,
                                     "first_agent_audio_ms": _ms(s.first_agent_audio_ms)})  # fmt: skip
            if s.first_agent_audio_ms is not None and not browser.first_audio_sent:
                browser.first_audio_sent = True
                self._send(browser, {"type": "first_audio", "ms": _ms(s.first_agent_audio_ms)})

    def _send(self, browser: _Browser, data: dict[str, object]) -> None:
        browser.outbox.append(json.dumps(data, separators=(",", ":")))
        self._flush(browser)

    def _flush(self, browser: _Browser) -> None:
        channel = browser.channel
        if channel is None or channel.readyState != "open":
            return
        while browser.outbox:
            text = browser.outbox.popleft()
            with contextlib.suppress(Exception):
                channel.send(text)

    def _ice_servers(self) -> list[RTCIceServer]:
        s = self.settings
        credential = s.ice_credential.get_secret_value() if s.ice_credential is not None else None
        return [RTCIceServer(url, username=s.ice_username, credential=credential) for url in s.ice_servers]


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers={**NO_STORE, **(headers or {})})


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _ms(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
