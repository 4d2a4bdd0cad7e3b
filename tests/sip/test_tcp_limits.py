"""TCP limits on loopback: connections per source, a deadline per message (slowloris), 413 for oversize."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from structlog.testing import capture_logs

from voicelive_sip.aio import UserAgent
from voicelive_sip.aio.transport import _RefusalLog
from voicelive_sip.config import SipSettings
from voicelive_sip.sip import Response, parse_message

WAIT = 10.0  # generous bound for an effect that should come at once; never a measurement
_branches = itertools.count(1)


@asynccontextmanager
async def gateway(**overrides: Any) -> AsyncIterator[UserAgent]:
    ua = UserAgent(SipSettings(port=0, local_address="127.0.0.1", transports=["tcp"], **overrides))
    await ua.start()
    try:
        yield ua
    finally:
        await ua.close()


def options(extra_headers: bytes = b"", content_length: int = 0) -> bytes:
    n = next(_branches)
    return (
        b"OPTIONS sip:gw@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-tcp-%d\r\n"
        b"From: <sip:probe@127.0.0.1>;tag=%d\r\nTo: <sip:gw@127.0.0.1>\r\n"
        b"Call-ID: tcp-limits-%d\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n%b"
        b"Content-Length: %d\r\n\r\n" % (n, n, n, extra_headers, content_length)
    )


async def connect(
    ua: UserAgent, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = ua.address
    return await asyncio.open_connection(host, port, local_addr=(source, 0))


async def read_response(reader: asyncio.StreamReader) -> Response:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    length = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)", head)
    assert length is not None
    response = parse_message(head + await asyncio.wait_for(reader.readexactly(int(length[1])), WAIT))
    assert isinstance(response, Response)
    return response


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server has closed the connection (EOF or reset); all it may send first is discarded."""
    try:
        while await reader.read(4096):
            pass
    except ConnectionResetError:
        pass
    return True


async def answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    writer.write(options())
    await writer.drain()
    return (await read_response(reader)).status_code


async def test_connections_beyond_the_per_source_cap_are_closed_while_other_sources_get_in() -> None:
    async with gateway(max_tcp_connections_per_source=2) as ua:
        first, second = await connect(ua), await connect(ua)
        for reader, writer in (first, second):
            assert await answered(reader, writer) == 200
        third_reader, third_writer = await connect(ua)
        assert await asyncio.wait_for(closed_by_server(third_reader), WAIT)
        third_writer.close()

        other_reader, other_writer = await connect(ua, source="127.0.0.2")
        assert await answered(other_reader, other_writer) == 200
        assert await answered(*first) == 200  # the accepted ones are untouched

        # A closed connection gives its source's slot back.
        first[1].close()
        await first[1].wait_closed()

        async def reconnect() -> int:
            while True:
                reader, writer = await connect(ua)
                with suppress(ConnectionError, asyncio.IncompleteReadError):
                    return await answered(reader, writer)
                writer.close()

        assert await asyncio.wait_for(reconnect(), WAIT) == 200
        for _, writer in (second, (other_reader, other_writer)):
            writer.close()


async def test_slowloris_one_byte_at_a_time_is_closed_at_the_message_deadline() -> None:
    async with gateway(tcp_message_timeout=0.3) as ua:
        reader, writer = await connect(ua)
        message = options(b"X-Pad: " + b"a" * 4000 + b"\r\n")

        async def dribble() -> None:
            # Every byte would reset an idle timer; it must not move the deadline of the message.
            with suppress(ConnectionError):
                for i in range(len(message)):
                    writer.write(message[i : i + 1])
                    await writer.drain()
                    await asyncio.sleep(0.05)

        task = asyncio.get_running_loop().create_task(dribble())
        try:
            assert await asyncio.wait_for(closed_by_server(reader), WAIT)
        finally:
            task.cancel()
            writer.close()


async def test_a_slow_message_within_the_deadline_is_answered_and_a_stalled_one_is_not() -> None:
    async with gateway(tcp_message_timeout=1.0) as ua:
        reader, writer = await connect(ua)
        message = options()
        for i in range(0, len(message), len(message) // 4 + 1):
            writer.write(message[i : i + len(message) // 4 + 1])
            await writer.drain()
            await asyncio.sleep(0.05)
        assert (await read_response(reader)).status_code == 200

        writer.write(options()[:40])  # the next message never completes
        await writer.drain()
        assert await asyncio.wait_for(closed_by_server(reader), WAIT)
        writer.close()


async def test_an_oversize_message_is_answered_413_and_the_connection_closed() -> None:
    async with gateway() as ua:
        reader, writer = await connect(ua)
        writer.write(options(content_length=100_000))  # over the 64 KiB limit; the body is never sent
        await writer.drain()
        response = await read_response(reader)
        assert response.status_code == 413
        assert (response.headers.get("Call-ID") or "").startswith("tcp-limits-")
        assert await asyncio.wait_for(closed_by_server(reader), WAIT)
        writer.close()


def test_refused_connections_are_logged_once_per_source_per_second() -> None:
    refusals = _RefusalLog()
    with capture_logs() as logs:
        for now in (10.0, 10.2, 10.9):
            refusals.refused("192.0.2.1", "per_source", 32, now)
        refusals.refused("192.0.2.2", "per_source", 32, 10.5)
        refusals.refused("192.0.2.1", "per_source", 32, 11.0)
    lines = [(e["source"], e["suppressed"]) for e in logs if e["event"] == "sip.tcp_connection_refused"]
    assert lines == [("192.0.2.1", 0), ("192.0.2.2", 0), ("192.0.2.1", 2)]
