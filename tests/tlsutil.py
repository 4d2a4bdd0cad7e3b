"""TLS helpers for the interop tests: a socat client tunnel (plain TCP in, verified TLS out) for peers that
cannot speak TLS themselves, such as Debian's sipp, and a wait for a TCP listener."""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.certs import TlsIdentity
from tests.interop.conftest import LOCALHOST, SEARCH_PATH, Process, Processes, free_port


def _listening(port: int) -> bool:
    """Something listens on 127.0.0.1:port over TCP (from /proc/net/tcp; state 0A is LISTEN)."""
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":
            return True
    return False


async def wait_tcp_listening(process: Process, port: int, timeout: float = 10.0) -> None:
    """Wait until `process` listens on 127.0.0.1:port (without connecting, which a tunnel would forward)."""
    deadline = time.monotonic() + timeout
    while not _listening(port):
        if process.popen.poll() is not None:
            raise AssertionError(f"{process.name} exited:\n{process.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{process.name} does not listen on {port}:\n{process.output()}")
        await asyncio.sleep(0.02)


@dataclass
class TlsTunnel:
    """socat accepting plain TCP on 127.0.0.1:port and carrying each connection over its own TLS connection
    to the target, whose certificate must chain to the CA and name the target's host."""

    port: int
    target: tuple[str, int]
    process: Process

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    def output(self) -> str:
        return self.process.output()


async def start_tls_tunnel(
    processes: Processes,
    target: tuple[str, int],
    ca: Path,
    client: TlsIdentity | None = None,
    name: str = "socat",
) -> TlsTunnel:
    """Start socat as a TLS client tunnel to `target` (skips when socat is not installed)."""
    binary = shutil.which("socat", path=SEARCH_PATH)
    if binary is None:
        pytest.skip("socat is not installed (Debian package socat)")
    port = free_port()
    host, target_port = target
    # verify=1 checks the chain against cafile; socat also checks that the certificate names `host` (its
    # commonname option defaults to the target host; an IP address matches an IP subjectAltName).
    tls = f"OPENSSL:{host}:{target_port},cafile={ca},verify=1,openssl-min-proto-version=TLS1.2"
    if client is not None:
        tls += f",cert={client.cert},key={client.key}"
    listen = f"TCP-LISTEN:{port},bind={LOCALHOST},reuseaddr,fork"
    process = processes.start(name, [binary, "-d", "-d", listen, tls])
    await wait_tcp_listening(process, port)
    return TlsTunnel(port, target, process)
