"""Smoke tests: every example runs against 127.0.0.1 and does what its docstring says."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from voicelive_sip.sip import Response, parse_message

EXAMPLES = Path(__file__).parent.parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait(data)


async def test_sans_io_responder_answers_options_and_rejects_garbage() -> None:
    example = load("sans_io_responder")
    server, responder = await example.serve("127.0.0.1", 0)
    port = server.get_extra_info("sockname")[1]
    loop = asyncio.get_running_loop()
    client, protocol = await loop.create_datagram_endpoint(_Client, local_addr=("127.0.0.1", 0))
    here = client.get_extra_info("sockname")[1]
    try:
        options = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{here};branch=z9hG4bKex1;rport\r\n"
            f"From: <sip:t@127.0.0.1>;tag=x\r\nTo: <sip:127.0.0.1>\r\nCall-ID: ex1\r\nCSeq: 1 OPTIONS\r\n"
            f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        client.sendto(options, ("127.0.0.1", port))
        reply = parse_message(await asyncio.wait_for(protocol.received.get(), 5))
        assert isinstance(reply, Response) and reply.status_code == 200 and "OPTIONS" in reply.allow
        client.sendto(options.replace(b"OPTIONS sip", b"OPTIONS <sip"), ("127.0.0.1", port))
        bad = parse_message(await asyncio.wait_for(protocol.received.get(), 5))
        assert isinstance(bad, Response) and bad.status_code == 400
        assert responder.answered == 1
    finally:
        client.close()
        server.close()
        if responder.timer is not None:
            responder.timer.cancel()
