"""`voicelive-sip` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from . import __version__
from .sdp import LocalSdpSession, SessionDescription, answer_offer, build_offer, parse_answer
from .sip import (
    CSeq,
    Dialog,
    NameAddress,
    Request,
    Response,
    SipUri,
    TransactionLayer,
    Via,
    make_response,
    new_branch,
    new_tag,
    parse_message,
)
from .sip.events import AckReceived, RequestReceived, ResponseReceived

PHONE = ("127.0.0.1", 5070)
GATEWAY = ("127.0.0.1", 5060)


class _Ladder:
    """Moves datagrams between two in-memory user agents and prints each one as a ladder line."""

    def __init__(self, phone: TransactionLayer, gateway: TransactionLayer) -> None:
        self.layers = {PHONE: phone, GATEWAY: gateway}
        self.now = 0.0

    def pump(self) -> None:
        moved = True
        while moved:
            moved = False
            for source, layer in self.layers.items():
                for out in layer.datagrams_to_send():
                    moved = True
                    message = parse_message(out.data)
                    first = out.data.split(b"\r\n", 1)[0].decode()
                    arrow = "──────────>" if source == PHONE else "<──────────"
                    print(f"  {self.now * 1000:7.1f} ms  phone {arrow} gateway   {first}")
                    self.layers[out.destination].receive(message, source, "UDP", self.now)


def _invite(offer: SessionDescription) -> Request:
    request = Request("INVITE", SipUri(host=GATEWAY[0], user="agent", port=GATEWAY[1]))
    h = request.headers
    h.add("Via", Via("UDP", PHONE[0], PHONE[1], (("branch", new_branch()), ("rport", None))))
    h.add("Max-Forwards", 70)
    h.add("From", NameAddress(SipUri(host=PHONE[0], user="caller"), "Caller", (("tag", new_tag()),)))
    h.add("To", NameAddress(SipUri(host=GATEWAY[0], user="agent")))
    h.add("Call-ID", f"{new_tag()}@{PHONE[0]}")
    h.add("CSeq", CSeq(1, "INVITE"))
    h.add("Contact", NameAddress(SipUri(host=PHONE[0], user="caller", port=PHONE[1])))
    h.add("Content-Type", "application/sdp")
    request.body = offer.serialize()
    return request


async def _greeting_from_fake_voicelive(codec: str) -> tuple[int, str]:
    from .testing import FakeVoiceLive
    from .voicelive import AudioDelta, OutputTranscript, ResponseDone, VoiceLiveSession

    audio = 0
    transcript = ""
    async with FakeVoiceLive(pace=0.0) as fake:
        settings = fake.settings(proactive_greeting_enabled=True)
        async with VoiceLiveSession(settings, call_codec="pcmu" if codec == "PCMU" else "pcma") as session:
            await session.greet()
            async for event in session.events():
                if isinstance(event, AudioDelta):
                    audio += len(event.audio)
                elif isinstance(event, OutputTranscript):
                    transcript = event.transcript
                elif isinstance(event, ResponseDone):
                    break
    return audio, transcript


def demo() -> int:
    """A call between two sans-I/O user agents, then a greeting from the bundled fake Voice Live."""
    print("voicelive-sip demo: SIP core call flow (in memory) and a Voice Live greeting (local fake)\n")
    phone, gateway = TransactionLayer(), TransactionLayer()
    ladder = _Ladder(phone, gateway)
    phone_sdp, gateway_sdp = LocalSdpSession(), LocalSdpSession()
    offer = build_offer(local_address=PHONE[0], local_port=40000, session=phone_sdp, codecs=("PCMU", "PCMA"))
    invite = _invite(offer)
    phone.send_request(invite, GATEWAY, "UDP", ladder.now)
    ladder.pump()

    incoming = gateway.next_event()
    assert isinstance(incoming, RequestReceived)
    contact = NameAddress(SipUri(host=GATEWAY[0], user="agent", port=GATEWAY[1]))
    uas = Dialog.as_uas(incoming.request, contact)
    ladder.now = 0.020
    gateway.respond(
        incoming.transaction, make_response(incoming.request, 180, to_tag=uas.local_tag), ladder.now
    )
    ladder.pump()
    answer, media = answer_offer(
        SessionDescription.parse(incoming.request.body),
        local_address=GATEWAY[0],
        local_port=41000,
        session=gateway_sdp,
    )
    ok = make_response(
        incoming.request,
        200,
        to_tag=uas.local_tag,
        headers=[("Contact", contact), ("Content-Type", "application/sdp")],
        body=answer.serialize(),
    )
    ladder.now = 0.350
    gateway.respond(incoming.transaction, ok, ladder.now)
    ladder.pump()

    final: Response | None = None
    while (event := phone.next_event()) is not None:
        if isinstance(event, ResponseReceived) and event.response.status_code == 200:
            final = event.response
    assert final is not None
    uac = Dialog.as_uac(invite, final)
    negotiated = parse_answer(offer, SessionDescription.parse(final.body))
    ack = uac.create_ack(invite.cseq.seq)
    ack.headers.prepend("Via", Via("UDP", PHONE[0], PHONE[1], (("branch", new_branch()),)))
    phone.send_stateless(ack, GATEWAY, "UDP")
    ladder.pump()
    acked = any(isinstance(e, AckReceived) for e in iter(gateway.next_event, None))
    uas.confirm()
    phone_rtp, gateway_rtp = media.remote_rtp, negotiated.remote_rtp  # each side's remote is the other
    print(
        f"\n  media: {negotiated.codec}/{negotiated.clock_rate} pt {negotiated.payload_type}, "
        f"DTMF pt {negotiated.dtmf_payload_type}, phone RTP {phone_rtp[0]}:{phone_rtp[1]} "
        f"<-> gateway RTP {gateway_rtp[0]}:{gateway_rtp[1]}, ACK matched: {acked}\n"
    )

    started = time.perf_counter()
    audio, transcript = asyncio.run(_greeting_from_fake_voicelive(negotiated.codec))
    elapsed = (time.perf_counter() - started) * 1000
    seconds = audio / 8000
    print(
        f"  Voice Live (FakeVoiceLive on 127.0.0.1): greeting of {seconds:.2f} s of {negotiated.codec} audio "
        f'in {elapsed:.0f} ms: "{transcript}"\n'
    )

    ladder.now = 5.0
    bye = uac.create_request("BYE")
    bye.headers.prepend("Via", Via("UDP", PHONE[0], PHONE[1], (("branch", new_branch()),)))
    phone.send_request(bye, GATEWAY, "UDP", ladder.now)
    ladder.pump()
    bye_in = next(e for e in iter(gateway.next_event, None) if isinstance(e, RequestReceived))
    gateway.respond(bye_in.transaction, make_response(bye_in.request, 200), ladder.now)
    ladder.pump()
    print("\n  call ended. The asyncio user agent, RTP bridge and gateway replace this in-memory demo.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="voicelive-sip",
        description="Bridge SIP phone calls to Azure AI Voice Live.",
        epilog="example: voicelive-sip demo",
    )
    parser.add_argument("--version", action="version", version=f"voicelive-sip {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run a self-contained call on loopback (no account, no network)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo()
    return 2


if __name__ == "__main__":
    sys.exit(main())
