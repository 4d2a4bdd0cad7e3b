"""Call recording: a stereo WAV per call (left caller, right agent) on one timeline, written as it goes.

Frames carry the loop time they arrived or were played at. A channel is laid out as one continuous stream as
long as each frame's time is within `tolerance` of where the stream says it belongs, so network jitter neither
clicks nor drifts; a frame further off re-syncs the channel to its own time (a real gap becomes silence).
Everything more than `flush_after` behind the newest audio goes to disk, so memory stays bounded.

A local fault (a read-only folder, a full disk) never reaches the call: opening raises `OSError` for the
caller to log and go on without a recording; a write that fails later stops this recording, keeps what is on
disk and closes the file (`failed` says why).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

from voicelive_sip.codecs import g711
from voicelive_sip.codecs.names import Codec

from ._logger import get_logger

__all__ = ["CallRecorder", "recording_path"]

log = get_logger("voicelive_sip.recording")

SAMPLE_RATE: Final = 8000  # G.711 calls; a wideband call records at its leg's rate (G.722: 16 kHz)
_CHANNELS: Final = 2
_BYTES_PER_FRAME: Final = 2 * _CHANNELS  # 16-bit samples, left and right
_HEADER_BYTES: Final = 44
# RIFF sizes are 32-bit: the largest data chunk a WAV file can describe.
_RIFF_MAX_FRAMES: Final = (0xFFFFFFFF - (_HEADER_BYTES - 8)) // _BYTES_PER_FRAME
_CALLER: Final = 0
_AGENT: Final = 1
_UNSAFE_RE: Final = re.compile(r"[^A-Za-z0-9._-]+")


def recording_path(directory: Path, call_id: str, started: datetime) -> Path:
    """`directory/<UTC start>_<sanitized Call-ID>_<hash>.wav`; the hash keeps distinct Call-IDs apart."""
    if started.tzinfo is not None:
        started = started.astimezone(UTC)
    # A Call-ID is chosen by the remote party: never let it pick a directory, a hidden file or a huge name.
    safe = _UNSAFE_RE.sub("_", call_id).strip("._")[:48] or "call"
    digest = hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return directory / f"{started:%Y%m%dT%H%M%S}{'Z' if started.tzinfo else ''}_{safe}_{digest}.wav"


class _Channel:
    """Where one side's stream continues, in samples on the shared timeline."""

    __slots__ = ("next",)

    def __init__(self) -> None:
        self.next: int | None = None


class CallRecorder:
    """Stereo 16-bit PCM WAV of a call at the leg's rate (8 kHz G.711, 16 kHz G.722): `caller()` left,
    `agent()` right, `close()` at the end."""

    def __init__(
        self,
        path: Path,
        *,
        law: Codec | str = "ulaw",
        tolerance: float = 0.12,
        flush_after: float = 1.0,
        max_seconds: float = 6 * 3600,
        call_id: str | None = None,
    ) -> None:
        try:  # the call's Codec, or any spelling of it (ulaw, PCMA, g711_alaw...)
            codec = Codec.parse(law)
        except ValueError:
            raise ValueError(f"law must be 'ulaw', 'alaw' or a Codec, got {law!r}") from None
        if not 0 <= tolerance < flush_after:
            raise ValueError("tolerance must be at least 0 and below flush_after")
        self.path: Final = path
        self.law: Final[g711.Law | None] = codec.law  # None: the leg carries PCM16
        self.sample_rate: Final = codec.sample_rate
        rate = self.sample_rate
        # ±60 ms of jitter on each frame puts two frames up to 120 ms apart from their nominal spacing.
        self._tolerance = round(tolerance * rate)
        self._lag = round(flush_after * rate)
        # Writes happen in chunks of at least this much, not per 20 ms frame.
        self._chunk = max(self._lag // 4, 1)
        self._max_frames = min(round(max_seconds * rate), _RIFF_MAX_FRAMES)
        self._origin: float | None = None
        self._channels = (_Channel(), _Channel())
        # _pcm[i] is sample _base + i of the timeline; _end is one past the newest sample either side wrote.
        self._pcm: npt.NDArray[np.int16] = np.zeros((2 * self._lag, _CHANNELS), dtype=np.int16)
        self._base = 0
        self._end = 0
        self._written = 0  # sample frames on disk
        self._truncated = False
        self._closed = False
        self._log = log.bind(call_id=call_id) if call_id is not None else log
        self.failed: str | None = None  # why recording stopped early (a write failed), if it did
        path.parent.mkdir(parents=True, exist_ok=True)
        file = path.open("wb")
        try:
            file.write(_wav_header(0, rate))
        except BaseException:
            with contextlib.suppress(OSError):
                file.close()
            raise
        self._file: BinaryIO | None = file

    @property
    def buffered_seconds(self) -> float:
        """Audio memory held, in seconds of stereo samples (what bounds memory on long calls)."""
        return len(self._pcm) / self.sample_rate

    @property
    def duration(self) -> float:
        """Seconds on the timeline so far (on disk once closed)."""
        return max(self._end, self._written) / self.sample_rate

    def caller(self, payload: bytes, at: float) -> None:
        """Record caller audio (the leg format) that arrived at loop time `at` (left channel)."""
        self._add(_CALLER, payload, at)

    def agent(self, payload: bytes, at: float) -> None:
        """Record agent audio (the leg format) sent to the caller at loop time `at` (right channel)."""
        self._add(_AGENT, payload, at)

    def close(self) -> Path:
        """Write what is left, both channels padded to the same length, fix the header; idempotent."""
        if not self._closed:
            self._closed = True
            self._flush(self._end)
            self._finish()
            self._log.info(
                "recording.closed", path=str(self.path), seconds=round(self._written / self.sample_rate, 3)
            )
        return self.path

    def _add(self, side: int, payload: bytes, at: float) -> None:
        if self._file is None or not payload:
            return
        if self._origin is None:
            self._origin = at
        channel = self._channels[side]
        arrived = round((at - self._origin) * self.sample_rate)
        expected = channel.next
        # Within the tolerance the stream is continuous whatever the jitter; outside it re-syncs, which only
        # real gaps (silence suppression, hold, a reply starting) and real clock skew should cause.
        position = (
            expected if expected is not None and abs(arrived - expected) <= self._tolerance else arrived
        )
        law = self.law
        if law is not None:
            samples = g711.decode(law, payload)
        else:
            samples = np.frombuffer(payload, "<i2", len(payload) // 2).astype(np.int16)
        channel.next = position + len(samples)
        # A re-sync backwards overwrites the overlap: alignment is kept within the tolerance, not the stream.
        self._place(side, position, samples)

    def _place(self, side: int, position: int, samples: npt.NDArray[np.int16]) -> None:
        end = min(position + len(samples), self._max_frames)
        if end < position + len(samples) and not self._truncated:
            self._truncated = True
            self._log.warning(
                "recording.truncated", path=str(self.path), seconds=self._max_frames / self.sample_rate
            )
        newest = max(self._end, end)
        # Flush no further than this frame's start, so a frame longer than `flush_after` is kept whole.
        upto = min(newest - self._lag, position)
        if upto - self._base >= self._chunk:
            self._flush(upto)
        # Audio older than what is already on disk (a channel more than `flush_after` behind) is dropped.
        start = max(position, self._base)
        if start >= end or self._file is None:
            return
        self._reserve(end - self._base)
        self._end = newest
        offset = start - position
        self._pcm[start - self._base : end - self._base, side] = samples[offset : offset + end - start]

    def _reserve(self, length: int) -> None:
        if length > len(self._pcm):
            grown = np.zeros((max(length, 2 * len(self._pcm)), _CHANNELS), dtype=np.int16)
            used = max(self._end - self._base, 0)
            grown[:used] = self._pcm[:used]
            self._pcm = grown

    def _flush(self, upto: int) -> None:
        """Write the timeline up to sample `upto` and drop it from memory."""
        count = upto - self._base
        if count <= 0 or self._file is None:
            return
        used = max(self._end - self._base, 0)
        held = min(count, used)
        try:
            self._file.write(self._pcm[:held].tobytes())
            # A jump (both sides silent for a while) is written as silence in bounded pieces.
            silence = bytes(_BYTES_PER_FRAME * min(count - held, self._lag))
            remaining = count - held
            while remaining > 0:
                piece = min(remaining, self._lag)
                self._file.write(silence[: piece * _BYTES_PER_FRAME])
                remaining -= piece
            self._written += count
            self._file.seek(0)
            self._file.write(_wav_header(self._written, self.sample_rate))
            self._file.seek(0, 2)
        except OSError as exc:
            # A full disk must not end the call: stop recording, keep what was written.
            self._fail(exc)
            self._finish()
            return
        self._base = upto
        keep = max(used - count, 0)
        if keep:
            self._pcm[:keep] = self._pcm[count:used]
        # Shrink back after a long frame grew the buffer, so one burst does not pin memory for the call.
        size = max(2 * self._lag, 2 * keep)
        if len(self._pcm) > 2 * size:
            self._pcm = self._pcm[:size].copy()
        self._pcm[keep:] = 0

    def _finish(self) -> None:
        if self._file is None:
            return
        file, self._file = self._file, None
        self._pcm = np.zeros((0, _CHANNELS), dtype=np.int16)
        try:
            # The header names only the frames known to be on disk, so a player stops where writing did.
            file.seek(0)
            file.write(_wav_header(self._written, self.sample_rate))
        except OSError as exc:
            self._fail(exc)
        finally:
            try:
                file.close()  # closes the descriptor even when flushing what is buffered fails
            except OSError as exc:
                self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        if self.failed is None:  # the first fault is the reason; the rest follow from it
            self.failed = exc.strerror or str(exc)
            self._log.error("recording.failed", path=str(self.path), reason=self.failed, errno=exc.errno)


def _wav_header(frames: int, rate: int) -> bytes:
    data = frames * _BYTES_PER_FRAME
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        _HEADER_BYTES - 8 + data,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        _CHANNELS,
        rate,
        rate * _BYTES_PER_FRAME,
        _BYTES_PER_FRAME,
        16,
        b"data",
        data,
    )
