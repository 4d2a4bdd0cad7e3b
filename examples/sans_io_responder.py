"""Drive the sans-I/O SIP core from asyncio yourself: a UDP endpoint that answers OPTIONS.

    python examples/sans_io_responder.py --port 5062
    sipp -sn options 127.0.0.1:5062 -m 1     # or any softphone's "ping"

This is the glue pattern the library's own user agent uses (aioquic style): datagrams in, the transaction
layer decides, `datagrams_to_send()` out, and one `loop.call_at` re-armed on `get_timer()` after every event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import cast

from voicelive_sip.sip import SipParseError, TransactionLayer, error_response, make_response, parse_message
from voicelive_sip.sip.transaction_events import RequestReceived

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS"


class Responder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.layer = TransactionLayer()
        self.loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.answered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's UDP transport does not subclass DatagramTransport, hence a cast, not a check.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = self.loop.time()
        try:
            message = parse_message(data)
        except SipParseError as error:
            response = error_response(error)  # a 400/505 when one can be formed, else drop
            if response is not None and self.transport is not None:
                self.transport.sendto(response.serialize(), addr)
            return
        self.layer.receive(message, addr, "UDP", now)
        while (event := self.layer.next_event()) is not None:
            if isinstance(event, RequestReceived):
                request = event.request
                if request.method == "OPTIONS":
                    response = make_response(request, 200, to_tag="resp1", headers=[("Allow", ALLOW)])
                else:
                    response = make_response(request, 501, to_tag="resp1", headers=[("Allow", ALLOW)])
                self.layer.respond(event.transaction, response, now)
                self.answered += 1
        self.transmit()

    def transmit(self) -> None:
        assert self.transport is not None
        for out in self.layer.datagrams_to_send():
            self.transport.sendto(out.data, out.destination)
        if self.timer is not None:
            self.timer.cancel()
        deadline = self.layer.get_timer()
        self.timer = self.loop.call_at(deadline, self._on_timer) if deadline is not None else None

    def _on_timer(self) -> None:
        self.timer = None
        self.layer.handle_timer(self.loop.time())
        self.transmit()


async def serve(host: str, port: int) -> tuple[asyncio.DatagramTransport, Responder]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Responder, local_addr=(host, port))
    return transport, protocol


async def main(host: str, port: int) -> None:
    transport, _ = await serve(host, port)
    print(f"answering OPTIONS on udp:{transport.get_extra_info('sockname')}; Ctrl-C to stop")
    try:
        await asyncio.Event().wait()
    finally:
        transport.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5062)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.host, args.port))
