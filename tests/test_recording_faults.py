"""Local faults while recording (a read-only folder, a full disk) cost the recording, never the call.

Tests run as root, where a 0o555 folder is still writable: a read-only folder is simulated by a path whose
parent is a regular file, or by `open` refusing with EACCES; a full disk by a file that fails with ENOSPC.
"""

from __future__ import annotations

import errno
import io
import os
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from tests.e2e.test_gateway import bridge, finished, target, tone
from voicelive_sip.codecs import g711
from voicelive_sip.recording import CallRecorder

FRAME = b"\x55" * 160  # 20 ms of loud-ish G.711
T0 = 1000.0


class FullDisk(io.FileIO):
    """A file on a disk where it may grow by `room` bytes: a write past that is short, the next one ENOSPC."""

    def __init__(self, path: Path, room: int) -> None:
        super().__init__(path, "wb")
        self.room = room
        self.size = 0

    def write(self, data: Any, /) -> int:
        view = memoryview(data).cast("B")
        fits = len(view) - max(0, self.tell() + len(view) - self.size - self.room)
        if fits <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = super().write(view[:fits])
        grown = max(self.size, self.tell())
        self.room -= grown - self.size
        self.size = grown
        return written


Opened = list[io.BufferedWriter]


def wav_files_on_a_full_disk(monkeypatch: pytest.MonkeyPatch, room: int) -> Opened:
    """Every WAV opened for writing lands on a disk with `room` bytes left (buffered, as `open` does)."""
    opened: Opened = []
    real_open = Path.open

    def fake_open(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if self.suffix == ".wav" and "w" in mode:
            opened.append(io.BufferedWriter(FullDisk(self, room)))
            return opened[-1]
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", fake_open)
    return opened


def wav_files_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening a WAV for writing fails as in a read-only folder."""
    real_open = Path.open

    def fake_open(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if self.suffix == ".wav" and "w" in mode:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", fake_open)


def feed(recorder: CallRecorder, seconds: float) -> None:
    for i in range(round(seconds * 50)):
        recorder.caller(FRAME, T0 + i * 0.02)
        recorder.agent(FRAME, T0 + i * 0.02)


# -- the recorder alone --------------------------------------------------------------------------------
def test_a_folder_that_cannot_be_created_raises_oserror_for_the_bridge_to_log(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OSError):
        CallRecorder(tmp_path / "file" / "recordings" / "call.wav")


def test_a_refused_open_raises_permission_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wav_files_refused(monkeypatch)
    with pytest.raises(PermissionError):
        CallRecorder(tmp_path / "call.wav")
    assert not (tmp_path / "call.wav").exists()


def test_a_full_disk_mid_call_stops_the_recording_and_closes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = wav_files_on_a_full_disk(monkeypatch, room=44 + 8000 * 4)  # the header and 1 s of audio
    recorder = CallRecorder(tmp_path / "call.wav", call_id="abc")
    with capture_logs() as logs:
        feed(recorder, 5.0)  # never raises, however long the call goes on
        assert recorder.failed == os.strerror(errno.ENOSPC)
        assert opened[0].closed  # closed at the fault, not at the end of the call
        feed(recorder, 1.0)
        assert recorder.close() == tmp_path / "call.wav"
    failures = [e for e in logs if e["event"] == "recording.failed"]
    assert len(failures) == 1  # the first fault is the reason; the rest follow from it
    assert failures[0]["log_level"] == "error" and failures[0]["errno"] == errno.ENOSPC
    assert failures[0]["call_id"] == "abc"
    assert recorder.buffered_seconds == 0  # memory given back too
    with wave.open(str(tmp_path / "call.wav")) as wav:  # what did fit is still a WAV file
        assert wav.getnchannels() == 2 and 0 < wav.getnframes() <= 8000


def test_a_full_disk_at_the_very_start_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened = wav_files_on_a_full_disk(monkeypatch, room=0)  # not even the header fits
    recorder = CallRecorder(tmp_path / "call.wav")
    feed(recorder, 3.0)
    recorder.close()
    assert recorder.failed == os.strerror(errno.ENOSPC) and opened[0].closed


def test_a_full_disk_found_only_when_closing_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = wav_files_on_a_full_disk(monkeypatch, room=44)
    recorder = CallRecorder(tmp_path / "call.wav")
    feed(recorder, 0.5)  # less than flush_after: nothing written before close()
    recorder.close()
    assert recorder.failed == os.strerror(errno.ENOSPC) and opened[0].closed


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux /dev/full")
def test_dev_full_is_a_full_disk_too() -> None:
    recorder = CallRecorder(Path("/dev/full"))
    feed(recorder, 3.0)
    recorder.close()
    assert recorder.failed == os.strerror(errno.ENOSPC)


# -- the gateway ---------------------------------------------------------------------------------------
def parent_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    # The folder was usable when the gateway started (a folder it cannot create stops start-up, see
    # tests/cli/test_first_hour.py) and is a file's child by the time a call records.
    monkeypatch.setattr("voicelive_sip.gateway._recording_dir_problems", lambda folder: [])
    (tmp_path / "file").write_bytes(b"")
    return str(tmp_path / "file" / "recordings")


def open_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    wav_files_refused(monkeypatch)
    return str(tmp_path)


async def bridged_call(folder: str, seconds: float) -> tuple[Any, Any]:
    """A call with recording on: greeting heard, caller audio reaches Voice Live, the caller hangs up."""
    uploaded: list[Path] = []
    options = {"recording_dir": folder}
    async with bridge(gateway_options=options, on_recording=uploaded.append) as (fake, gateway, phone):
        call = await phone.call(target(gateway))
        await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)  # RTP reaches the caller
        spoken = tone(seconds, 1000.0)
        await call.play(spoken)
        await fake.wait_for(lambda f: g711.ulaw_encode(spoken[-800:]) in f.appended_audio, timeout=5)
        await call.hangup()
        await finished(gateway)
        summary = gateway.summaries[0]
        assert summary.end_reason == "bye" and summary.ended_by == "remote"
        # Nothing leaks: the RTP port pair is back in the pool and the Voice Live socket is closed.
        assert gateway.pool.in_use == 0
        assert [c.closed for c in fake.connections] == [True]
    return summary, uploaded


@pytest.mark.parametrize("fault", [parent_is_a_file, open_refused])
async def test_a_call_whose_recording_cannot_start_goes_on_unrecorded(
    fault: Callable[[Path, pytest.MonkeyPatch], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary, uploaded = await bridged_call(fault(tmp_path, monkeypatch), 0.5)
    assert summary.recording is None and uploaded == []
    assert summary.recording_failed in (os.strerror(errno.EACCES), os.strerror(errno.ENOTDIR))


async def test_a_disk_that_fills_up_mid_call_stops_only_the_recording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = wav_files_on_a_full_disk(monkeypatch, room=44 + 16000)  # half a second of audio fits
    summary, uploaded = await bridged_call(str(tmp_path), 2.0)
    assert summary.recording_failed == os.strerror(errno.ENOSPC)
    assert len(opened) == 1 and opened[0].closed
    assert uploaded == [summary.recording]  # what fit is still handed to the application
    with wave.open(str(summary.recording)) as wav:
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    assert 0 < len(frames) <= 2 * 4000  # what was written before the disk filled up, and no more


async def test_the_gateway_still_takes_calls_after_a_recording_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = parent_is_a_file(tmp_path, monkeypatch)
    async with bridge(gateway_options={"recording_dir": folder}) as (fake, gateway, phone):
        for count in (1, 2):
            call = await phone.call(target(gateway))
            await call.wait_for(lambda c: c.first_audio_time() is not None, timeout=5)
            await call.hangup()
            await finished(gateway, count)
        assert gateway.pool.in_use == 0 and all(c.closed for c in fake.connections)
