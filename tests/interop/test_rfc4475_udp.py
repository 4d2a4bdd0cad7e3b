"""RFC 4475 torture messages sent over UDP to a running user agent: it answers each as REACTIONS.tsv records
(a status code, nothing, or handing an INVITE to the application) and keeps answering OPTIONS afterwards."""

from __future__ import annotations

import asyncio
import csv
import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest

from tests.interop.conftest import LOCALHOST, CallPlan, RunningUa

pytestmark = pytest.mark.interop

DATA = Path(__file__).parent.parent / "data" / "rfc4475"
ROWS = list(csv.DictReader((DATA / "REACTIONS.tsv").open(encoding="utf-8"), delimiter="\t"))
APP_REJECTS_WITH = 603

# The top Via's sent-by, allowing for RFC 3261 LWS and line folding inside the sent-protocol (wsinv.dat).
TOP_VIA_SENT_BY = re.compile(
    rb"^(?:via|v)[ \t]*:[ \t]*SIP\s*/\s*[\d.]+\s*/\s*[A-Za-z]+\s+([^;,\s]+)", re.IGNORECASE | re.MULTILINE
)
CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S+)", re.I | re.M)
STATUS_LINE = re.compile(rb"^SIP/2\.0 (\d{3}) ")
_probes = itertools.count()

# Where the user agent's answer differs from REACTIONS.tsv. Strict: each fails the run once it is resolved,
# so the entry has to go with the fix.
DEVIATIONS: dict[str, str] = {}
PARAMS = [
    pytest.param(row, marks=pytest.mark.xfail(strict=True, reason=DEVIATIONS[row["file"]]))
    if row["file"] in DEVIATIONS
    else row
    for row in ROWS
]

OpenPeer = Callable[[], Awaitable["UdpPeer"]]


@pytest.fixture
def call_plan() -> CallPlan:
    return CallPlan(reject_status=APP_REJECTS_WITH)


class UdpPeer(asyncio.DatagramProtocol):
    """A plain UDP socket on 127.0.0.1 that keeps every datagram it receives."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        self.received.put_nowait(data)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes, destination: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, destination)

    async def next(self, timeout: float) -> bytes:
        return await asyncio.wait_for(self.received.get(), timeout)

    def drain(self) -> list[bytes]:
        items = []
        while not self.received.empty():
            items.append(self.received.get_nowait())
        return items


@pytest.fixture
async def open_peer() -> AsyncIterator[OpenPeer]:
    peers: list[UdpPeer] = []

    async def open_() -> UdpPeer:
        _, peer = await asyncio.get_running_loop().create_datagram_endpoint(
            UdpPeer, local_addr=(LOCALHOST, 0)
        )
        peers.append(peer)
        return peer

    yield open_
    for peer in peers:
        assert peer.transport is not None
        peer.transport.close()


def aim_top_via(message: bytes, port: int) -> bytes:
    """The message with its top Via's sent-by replaced by 127.0.0.1:port; every other byte unchanged."""
    match = TOP_VIA_SENT_BY.search(message)
    assert match is not None, message[:200]
    return message[: match.start(1)] + f"{LOCALHOST}:{port}".encode() + message[match.end(1) :]


def status_of(response: bytes) -> int:
    match = STATUS_LINE.match(response)
    assert match is not None, response[:200]
    return int(match[1])


def header_values(response: bytes, name: str) -> list[str]:
    head = response.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    return [
        line.split(":", 1)[1].strip()
        for line in head.split("\r\n")[1:]
        if ":" in line and line.split(":", 1)[0].strip().lower() == name.lower()
    ]


async def probe_options(ua: RunningUa, peer: UdpPeer) -> None:
    """Send an OPTIONS and require its 200: the user agent is alive and answering."""
    n = next(_probes)
    request = (
        f"OPTIONS sip:{ua.target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOCALHOST}:{peer.port};branch=z9hG4bKprobe{n};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{LOCALHOST}>;tag=probe{n}\r\n"
        f"To: <sip:{ua.target}>\r\n"
        f"Call-ID: probe{n}@{LOCALHOST}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    peer.send(request, (ua.host, ua.port))
    answer = await peer.next(timeout=5)
    assert status_of(answer) == 200, answer
    assert header_values(answer, "Call-ID") == [f"probe{n}@{LOCALHOST}"]


async def torture(ua: RunningUa, open_peer: OpenPeer, row: dict[str, str]) -> list[bytes]:
    """Send one message from its own socket; return what came back before an OPTIONS probe was answered."""
    peer = await open_peer()
    probe = await open_peer()
    message = (DATA / row["file"]).read_bytes()
    peer.send(aim_top_via(message, peer.port), (ua.host, ua.port))
    responses: list[bytes] = []
    if row["ua_reaction"] != "drop":
        # Wait for the final answer (for `process`, after the application has rejected the INVITE).
        while not responses or status_of(responses[-1]) < 200:
            responses.append(await peer.next(timeout=5))
    await probe_options(ua, probe)
    await asyncio.sleep(0.1)
    return responses + peer.drain()


@pytest.mark.parametrize("row", PARAMS, ids=[r["file"] for r in ROWS])
async def test_torture_message_gets_the_recorded_reaction(
    ua: RunningUa, open_peer: OpenPeer, row: dict[str, str]
) -> None:
    responses = await torture(ua, open_peer, row)
    finals = sorted({status_of(r) for r in responses if status_of(r) >= 200})
    reaction = row["ua_reaction"]
    if reaction == "drop":
        assert responses == []
    elif reaction == "process":
        call_id = CALL_ID.search((DATA / row["file"]).read_bytes())
        assert call_id is not None
        assert [c.call_id for c in ua.incoming] == [call_id[1].decode()]
        assert finals == [APP_REJECTS_WITH]
    else:
        assert finals == [int(reaction)], [r[:300] for r in responses]
    if reaction != "process":
        assert ua.incoming == []  # e.g. dblreq.dat: the INVITE after the REGISTER is not a second message
    final = next((r for r in responses if status_of(r) >= 200), b"")
    if reaction == "405":
        assert header_values(final, "Allow"), final
    if reaction == "415":
        assert "application/sdp" in ",".join(header_values(final, "Accept")), final
    if reaction == "420":
        unsupported = ",".join(header_values(final, "Unsupported"))
        assert "nothingSupportsThis" in unsupported and "nothingSupportsThisEither" in unsupported, final
    assert ua.errors == []


async def test_all_torture_messages_in_a_row_leave_the_user_agent_answering(
    ua: RunningUa, open_peer: OpenPeer
) -> None:
    for row in ROWS:
        peer = await open_peer()
        peer.send(aim_top_via((DATA / row["file"]).read_bytes(), peer.port), (ua.host, ua.port))
    await probe_options(ua, await open_peer())
    assert ua.errors == []
