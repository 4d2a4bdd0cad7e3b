"""End-to-end harness: the gateway against real peers (sipp, baresip), speech made with espeak-ng and sox, and
headless baresip instances driven over ctrl_tcp with their audio recorded to WAV files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import socket
import subprocess
import time
import wave
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pytest

from tests.interop.conftest import (
    LOCALHOST,
    SEARCH_PATH,
    Process,
    Processes,
    free_port,
    pki,
    processes,
    sipp,
)

__all__ = [
    "Baresip",
    "SpeechAudio",
    "free_sip_port",
    "free_udp_range",
    "pki",
    "processes",
    "require_binary",
    "sipp",
]

HERE = Path(__file__).parent
SCENARIOS = HERE / "scenarios"
BARESIP_CONFIGS = HERE / "baresip"

# The Debian package that ships each binary, named in skip reasons (CI installs them, see .ci/run).
PACKAGES = {"sipp": "sip-tester", "baresip": "baresip-core", "espeak-ng": "espeak-ng", "sox": "sox"}


def require_binary(name: str) -> str:
    """The binary's path, or skip the test naming the package that provides it."""
    path = shutil.which(name, path=SEARCH_PATH)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package {PACKAGES.get(name, name)})")
    return path


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def _tcp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        try:
            tcp.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def free_udp_range(count: int) -> int:
    """An even port starting `count` consecutive UDP ports free on 127.0.0.1 right now (RTP ranges)."""
    # Below Linux's ephemeral range (32768 and up) so that no socket bound to port 0 races us for them.
    chooser = random.Random()
    for _ in range(200):
        first = chooser.randrange(20000, 32000 - count, 2)
        if all(_udp_free(port) for port in range(first, first + count)):
            return first
    raise RuntimeError(f"no {count} consecutive UDP ports free")


def free_sip_port() -> int:
    """A SIP port for baresip: free on UDP and TCP, and port + 1 free on TCP (baresip listens there too)."""
    for _ in range(100):
        port = free_port()
        if port < 65535 and _tcp_free(port + 1):
            return port
    raise RuntimeError("no SIP port with a free neighbour")


# ---------------------------------------------------------------------------------------------------------
# Audio


@dataclass(frozen=True)
class SpeechAudio:
    """espeak-ng speech as raw μ-law (what sipp streams), and a silent WAV longer than any call."""

    # Longer than the greeting: caller speech from the start would barge in before the agent says a word.
    LEAD_SILENCE_MS = 2000

    ulaw: Path  # LEAD_SILENCE_MS of digital silence, then the speech
    silence_wav: Path

    @property
    def ulaw_ms(self) -> int:
        return self.ulaw.stat().st_size // 8  # one byte per sample at 8000 Hz


@pytest.fixture(scope="session")
def speech_audio(tmp_path_factory: pytest.TempPathFactory) -> SpeechAudio:
    """Audio made at test time the way /work/shared/interop/make_audio.sh makes it."""
    espeak = require_binary("espeak-ng")
    sox = require_binary("sox")
    directory = tmp_path_factory.mktemp("audio")
    spoken = subprocess.run(
        [espeak, "-v", "en-us", "-s", "170", "--stdout", "This is the caller. One two three four five."],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    wav = directory / "speech_8k.wav"
    to_8k = [sox, "-t", "wav", "-", "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(wav)]
    subprocess.run(to_8k, input=spoken, check=True, timeout=30)
    # sipp's rtp_stream plays headerless files only: it would send a WAV header as audio.
    ulaw = directory / "speech.ulaw"
    lead = str(SpeechAudio.LEAD_SILENCE_MS / 1000)
    to_ulaw = [sox, str(wav), "-t", "raw", "-e", "mu-law", "-b", "8", str(ulaw), "pad", lead, "0"]
    subprocess.run(to_ulaw, check=True, timeout=30)
    # baresip's source is digital silence: speech from it would start a caller turn in the fake's VAD and
    # barge into the greeting the test listens for.
    silence = directory / "silence_60s.wav"
    silent = [sox, "-D", "-n", "-r", "8000", "-c", "1", "-b", "16", str(silence), "trim", "0", "60"]
    subprocess.run(silent, check=True, timeout=30)
    return SpeechAudio(ulaw, silence)


def render_scenario(name: str, directory: Path, **values: str) -> Path:
    """A scenario of tests/e2e/scenarios written into `directory` with its `@KEY@` placeholders filled in."""
    text = (SCENARIOS / name).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    path = directory / name
    path.write_text(text)
    return path


Samples = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Recording:
    """A mono 16-bit WAV that baresip's sndfile module wrote, as samples in [-1, 1)."""

    samples: Samples
    rate: int

    @classmethod
    def read(cls, path: Path) -> Recording:
        with wave.open(str(path), "rb") as wav:
            assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2), path
            frames = wav.readframes(wav.getnframes())
            return cls(np.frombuffer(frames, dtype="<i2").astype(np.float64) / 32768.0, wav.getframerate())

    def window_levels_dbfs(self, window_ms: int = 20) -> Samples:
        """RMS level of each `window_ms` window, in dBFS (digital silence is -inf)."""
        size = self.rate * window_ms // 1000
        usable = len(self.samples) // size * size
        windows = self.samples[:usable].reshape(-1, size)
        with np.errstate(divide="ignore"):
            levels: Samples = 20 * np.log10(np.sqrt(np.mean(windows**2, axis=1)))
        return levels

    def loud_span(self, threshold_dbfs: float, window_ms: int = 20) -> Samples:
        """The samples from the first to the last `window_ms` window louder than `threshold_dbfs`."""
        loud = np.flatnonzero(self.window_levels_dbfs(window_ms) > threshold_dbfs)
        if len(loud) == 0:
            return np.zeros(0)
        size = self.rate * window_ms // 1000
        return self.samples[int(loud[0]) * size : (int(loud[-1]) + 1) * size]

    def duration_ms(self, samples: Samples) -> int:
        return len(samples) * 1000 // self.rate

    @staticmethod
    def rms_dbfs(samples: Samples) -> float:
        return float(20 * np.log10(np.sqrt(np.mean(samples**2)))) if len(samples) else float("-inf")

    def dominant_hz(self, samples: Samples) -> float:
        """The frequency of the strongest FFT bin (Hann window)."""
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        return float(np.fft.rfftfreq(len(samples), 1 / self.rate)[int(np.argmax(spectrum))])


# ---------------------------------------------------------------------------------------------------------
# baresip


def _netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


@dataclass
class Baresip:
    """A headless baresip (tests/e2e/baresip/ROLE) on free 127.0.0.1 ports, controlled over ctrl_tcp."""

    role: str
    sip_port: int
    ctrl_port: int
    rtp_first: int
    directory: Path
    recordings: Path
    process: Process
    processes: Processes

    @property
    def uri(self) -> str:
        user = "bob" if self.role.startswith("uas") else "alice"
        return f"sip:{user}@{LOCALHOST}:{self.sip_port}"

    @property
    def tls_port(self) -> int:
        """Where baresip listens for SIP over TLS (if its config has a sip_certificate): SIP port + 1."""
        return self.sip_port + 1

    @property
    def tls_uri(self) -> str:
        user = "bob" if self.role.startswith("uas") else "alice"
        return f"sip:{user}@{LOCALHOST}:{self.tls_port};transport=tls"

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until ctrl_tcp accepts connections (baresip has loaded its modules and bound SIP by then)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.popen.poll() is not None:
                raise AssertionError(f"baresip exited early:\n{self.process.output()}")
            try:
                _, writer = await asyncio.open_connection(LOCALHOST, self.ctrl_port)
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"baresip ctrl_tcp not up:\n{self.process.output()}") from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return

    async def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, object]:
        """Send one ctrl_tcp command (netstring-framed JSON) and return baresip's response to it."""
        reader, writer = await asyncio.open_connection(LOCALHOST, self.ctrl_port)
        try:
            message = {"command": command, "params": params, "token": command}
            writer.write(_netstring(json.dumps(message).encode()))
            await writer.drain()
            async with asyncio.timeout(timeout):
                while True:
                    length = int((await reader.readuntil(b":"))[:-1])
                    payload = await reader.readexactly(length + 1)
                    reply: dict[str, object] = json.loads(payload[:-1])
                    if reply.get("response") and reply.get("token") == command:
                        return reply
        finally:
            writer.close()
            await writer.wait_closed()

    async def quit(self, timeout: float = 10.0) -> None:
        """Ask baresip to quit (hanging up its calls) and wait for it to exit, so its WAVs are complete."""
        if self.process.popen.poll() is None:
            # baresip may close the connection while quitting, before it answers.
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
                await self.command("quit")
        await self.processes.wait(self.process, timeout)

    def received_recordings(self) -> list[Path]:
        """sndfile's recordings of what baresip received (`dump-*-dec.wav`), oldest first."""
        return sorted(self.recordings.glob("dump-*-dec.wav"))

    def output(self) -> str:
        return self.process.output()


class StartBaresip(Protocol):
    """Starts baresip with the config of tests/e2e/baresip/ROLE; `values` fill its own placeholders."""

    def __call__(self, role: str, values: Mapping[str, str] | None = None) -> Baresip: ...


@pytest.fixture
def baresip(processes: Processes, speech_audio: SpeechAudio) -> Iterator[StartBaresip]:
    """Starts baresip as `"uac"` or `"uas"` (or a role of tests/e2e/baresip with `values` for its extra
    placeholders, e.g. `"uas_tls"`), silence as its microphone; all are killed at teardown."""
    binary = require_binary("baresip")

    def start(role: str, values: Mapping[str, str] | None = None) -> Baresip:
        directory = processes.workdir / f"baresip_{role}"
        recordings = directory / "recordings"
        recordings.mkdir(parents=True)
        sip_port, ctrl_port, rtp_first = free_sip_port(), free_port(), free_udp_range(20)
        placeholders = {
            **(values or {}),
            "SIP_PORT": str(sip_port),
            "CTRL_PORT": str(ctrl_port),
            "RTP_FIRST": str(rtp_first),
            "RTP_LAST": str(rtp_first + 19),
            "SOURCE_WAV": str(speech_audio.silence_wav),
            "RECORDINGS": str(recordings),
        }
        for name in ("config", "accounts"):
            text = (BARESIP_CONFIGS / role / name).read_text()
            for key, value in placeholders.items():
                text = text.replace(f"@{key}@", value)
            (directory / name).write_text(text)
        (directory / "contacts").write_text("")
        # -t: a backstop so that baresip ends even if the test and its teardown never get to it.
        process = processes.start(f"baresip_{role}", [binary, "-f", str(directory), "-t", "60"])
        return Baresip(role, sip_port, ctrl_port, rtp_first, directory, recordings, process, processes)

    yield start
