"""Loopback packet capture for the TLS/SRTP tests: tcpdump writes a pcap of some ports, a small reader gives
the UDP datagrams and TCP segments back, and `MediaVerdict` says whether RTP among them was SRTP or plain."""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.interop.conftest import Process, Processes

# pcap link types tcpdump may write for `-i lo` (Linux gives Ethernet with zeroed addresses) and `-i any`.
_LINKTYPE_ETHERNET = 1
_LINKTYPE_LINUX_SLL = 113
_ETHERTYPE_IPV4 = 0x0800
_IPPROTO_TCP = 6
_IPPROTO_UDP = 17

# G.711 at 20 ms: the payload of every audio packet both the gateway and baresip send.
G711_PAYLOAD = 160
# SRTP authentication tags (RFC 3711 §8.2, RFC 7714 §9.3): AES_CM_128_HMAC_SHA1_32, _80, AEAD_AES_128_GCM.
SRTP_TAG_LENGTHS = frozenset({4, 10, 16})


@dataclass(frozen=True)
class Datagram:
    """One captured UDP datagram or TCP segment (IPv4); a TCP segment's payload may be empty."""

    protocol: str  # "udp" or "tcp"
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


def read_pcap(path: Path) -> list[Datagram]:
    """The IPv4 UDP datagrams and TCP segments of a classic pcap file (what `tcpdump -w` writes)."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        order = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        order = ">"
    else:
        raise ValueError(f"{path}: not a pcap file (magic {magic.hex()})")
    (linktype,) = struct.unpack(order + "I", data[20:24])
    datagrams: list[Datagram] = []
    offset = 24
    while offset + 16 <= len(data):
        _, _, captured, _ = struct.unpack(order + "IIII", data[offset : offset + 16])
        if offset + 16 + captured > len(data):
            break  # a record tcpdump is still writing
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        if linktype == _LINKTYPE_ETHERNET and len(frame) >= 14:
            ethertype, ip = struct.unpack("!H", frame[12:14])[0], frame[14:]
        elif linktype == _LINKTYPE_LINUX_SLL and len(frame) >= 16:
            ethertype, ip = struct.unpack("!H", frame[14:16])[0], frame[16:]
        else:
            continue
        if ethertype != _ETHERTYPE_IPV4 or len(ip) < 20 or ip[9] not in (_IPPROTO_UDP, _IPPROTO_TCP):
            continue
        header, total = (ip[0] & 0x0F) * 4, struct.unpack("!H", ip[2:4])[0]
        source_port, destination_port = struct.unpack("!HH", ip[header : header + 4])
        if ip[9] == _IPPROTO_UDP:
            protocol, payload = "udp", ip[header + 8 : total]
        else:
            protocol, payload = "tcp", ip[header + (ip[header + 12] >> 4) * 4 : total]
        source, destination = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
        datagrams.append(Datagram(protocol, (source, source_port), (destination, destination_port), payload))
    return datagrams


# ---------------------------------------------------------------------------------------------------------
# RTP or SRTP?


def is_rtcp(packet: bytes) -> bool:
    """RTCP (and SRTCP, whose first 8 bytes are clear): version 2, packet type 200-207 (RFC 5761 §4)."""
    return len(packet) >= 8 and packet[0] >> 6 == 2 and 200 <= packet[1] <= 207


def is_plain_rtcp(packet: bytes) -> bool:
    """A compound RTCP packet in clear: its chain of RTCP headers ends exactly at the packet's end. SRTCP's
    first header is clear too, but the rest is ciphertext followed by the E-flag/index word and the tag
    (RFC 3711 §3.4), so its chain runs into garbage or leaves bytes over."""
    offset = 0
    while offset + 4 <= len(packet):
        if packet[offset] >> 6 != 2 or not 200 <= packet[offset + 1] <= 207:
            return False
        offset += 4 + 4 * struct.unpack("!H", packet[offset + 2 : offset + 4])[0]
    return offset == len(packet) > 0


def rtp_body(packet: bytes) -> bytes | None:
    """What follows an RTP packet's fixed header, CSRCs and extension (SRTP: ciphertext then tag); None if the
    packet is not RTP version 2."""
    if len(packet) < 12 or packet[0] >> 6 != 2 or is_rtcp(packet):
        return None
    offset = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:  # header extension: 4 bytes, then its length in 32-bit words
        if len(packet) < offset + 4:
            return None
        offset += 4 + 4 * struct.unpack("!H", packet[offset + 2 : offset + 4])[0]
    return packet[offset:] if len(packet) >= offset else None


def chi_square_uniform(data: bytes) -> float:
    """Pearson's χ² of the byte values of `data` against a uniform distribution over 0-255 (255 d.o.f.)."""
    expected = len(data) / 256
    counts = Counter(data)
    return sum((counts.get(value, 0) - expected) ** 2 / expected for value in range(256))


# Ciphertext (AES counter mode or GCM) is indistinguishable from uniform random bytes, so over N payload bytes
# its χ² against uniform is about 255 ± 23 (the χ² distribution with 255 degrees of freedom). G.711 is nothing
# like uniform: digital silence is one byte value repeated (0xFF in μ-law, 0xD5 in A-law), a tone uses a few
# dozen codes unevenly, and speech clusters around the low-level codes; their χ² is in the tens of thousands
# for a few seconds of audio. A bound of 400 (over 6 standard deviations above the mean for ciphertext) fails
# for ciphertext about once in a billion runs and passes no G.711 a phone or the fake would send.
CIPHERTEXT_CHI_SQUARE_BOUND = 400.0
# Enough payload bytes for the statistic to mean something (the χ² approximation wants ≥ 5 per value).
MIN_BYTES_FOR_VERDICT = 256 * 20


@dataclass
class MediaVerdict:
    """What one direction of a captured media stream looked like."""

    rtp_packets: int = 0
    plain_length_packets: int = 0  # G.711 packets with no room for a tag: plain RTP
    srtp_length_packets: int = 0  # G.711 + a 4, 10 or 16 byte tag
    other_length_packets: int = 0
    rtcp_packets: int = 0
    plain_rtcp_packets: int = 0
    tag_lengths: Counter[int] = field(default_factory=Counter)
    chi_square: float = math.nan  # of the first 160 body bytes of every packet (the would-be G.711 payload)

    @property
    def all_srtp(self) -> bool:
        """Every RTP packet has an SRTP tag's length and the payload bytes look like ciphertext."""
        return (
            self.rtp_packets > 0
            and self.srtp_length_packets == self.rtp_packets
            and self.chi_square < CIPHERTEXT_CHI_SQUARE_BOUND
        )


def media_verdict(packets: Iterable[bytes]) -> MediaVerdict:
    """Judge one direction's UDP payloads: plain RTP or SRTP (see CIPHERTEXT_CHI_SQUARE_BOUND for why)."""
    verdict = MediaVerdict()
    payload_bytes = bytearray()
    for packet in packets:
        if is_rtcp(packet):
            verdict.rtcp_packets += 1
            verdict.plain_rtcp_packets += is_plain_rtcp(packet)
            continue
        body = rtp_body(packet)
        if body is None:
            continue
        verdict.rtp_packets += 1
        extra = len(body) - G711_PAYLOAD
        if extra == 0:
            verdict.plain_length_packets += 1
        elif extra in SRTP_TAG_LENGTHS:
            verdict.srtp_length_packets += 1
            verdict.tag_lengths[extra] += 1
        else:
            verdict.other_length_packets += 1
        payload_bytes += body[:G711_PAYLOAD]
    if len(payload_bytes) >= MIN_BYTES_FOR_VERDICT:
        verdict.chi_square = chi_square_uniform(bytes(payload_bytes))
    return verdict


# ---------------------------------------------------------------------------------------------------------
# tcpdump


@dataclass
class PacketCapture:
    """tcpdump writing what a filter selects on lo to a pcap file until `stop()`."""

    process: Process
    path: Path
    processes: Processes

    @classmethod
    async def start(
        cls, binary: str, processes: Processes, expression: str, name: str = "tcpdump"
    ) -> PacketCapture:
        """Capture on lo what `expression` (a tcpdump filter like `udp portrange 20000-20019`) selects."""
        path = processes.workdir / f"{name}.pcap"
        # -U: write each packet as it comes (the file is complete when tcpdump ends); -Z root: Debian's
        # tcpdump drops to its own user after opening the device, who may not write to the test's directory.
        args = [binary, "-i", "lo", "-n", "-U", "-Z", "root", "-w", str(path), expression]
        capture = cls(processes.start(name, args), path, processes)
        deadline = time.monotonic() + 10
        while "listening on" not in capture.process.output():
            if capture.process.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"tcpdump did not start: {capture.process.output()}")
            await asyncio.sleep(0.02)
        return capture

    def so_far(self) -> list[Datagram]:
        """What tcpdump has captured until now (it writes each packet at once)."""
        return read_pcap(self.path) if self.path.exists() else []

    async def stop(self) -> list[Datagram]:
        """End tcpdump (it flushes on SIGTERM) and return what it captured."""
        self.processes.stop(self.process)
        await self.processes.wait(self.process, 5)
        return read_pcap(self.path)
