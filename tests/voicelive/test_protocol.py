"""VoiceLiveProtocol with plain dicts: what server events mean, which client events go out, what is kept."""

from __future__ import annotations

import ast
import base64
from pathlib import Path
from typing import Any

import pytest

from voicelive_sip.codecs import Codec
from voicelive_sip.voicelive import protocol as protocol_module
from voicelive_sip.voicelive.audio import Passthrough, wire_format
from voicelive_sip.voicelive.events import (
    AudioDelta,
    FunctionCall,
    InputTranscript,
    ResponseDone,
    ResponseStarted,
    ServiceError,
    SpeechStarted,
    SpeechStopped,
    Usage,
)
from voicelive_sip.voicelive.protocol import AudioBacklog, VoiceLiveProtocol, append_event


def protocol(*, outage_ms: int = 1000, replay_ms: int = 1000, codec: Codec = Codec.PCMU) -> VoiceLiveProtocol:
    wire = wire_format("g711", codec)
    return VoiceLiveProtocol(
        wire, codec, Passthrough(), outage_ms=outage_ms, replay_ms=replay_ms, history_items=20
    )


def audio_delta(item_id: str, audio: bytes, response_id: str = "resp_1") -> dict[str, Any]:
    return {
        "type": "response.audio.delta",
        "response_id": response_id,
        "item_id": item_id,
        "delta": base64.b64encode(audio).decode(),
    }


def test_the_protocol_imports_no_io() -> None:
    tree = ast.parse(Path(protocol_module.__file__ or "").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] in ("asyncio", "aiohttp", "azure", "socket")}


def test_audio_deltas_become_audio_events_with_their_arrival_time() -> None:
    p = protocol()
    event = p.receive(audio_delta("item_1", b"\x01" * 160), arrived=12.5)
    assert event == AudioDelta("resp_1", "item_1", b"\x01" * 160, 12.5)
    assert p.receive(audio_delta("item_1", b"")) is None  # nothing to play


def test_replies_are_tracked_from_created_to_done_with_usage() -> None:
    p = protocol()
    assert p.cancel_response() is None  # nothing running: a cancel would be a service error
    assert p.receive({"type": "response.created", "response": {"id": "resp_1"}}) == ResponseStarted("resp_1")
    assert p.active_responses == {"resp_1"}
    assert p.cancel_response() == {"type": "response.cancel"}
    done = p.receive(
        {
            "type": "response.done",
            "response": {
                "id": "resp_1",
                "status": "cancelled",
                "usage": {"total_tokens": 30, "input_tokens": 10, "output_tokens": 20},
            },
        }
    )
    assert done == ResponseDone("resp_1", "cancelled", Usage(30, 10, 20))
    assert p.active_responses == set()


def test_barge_in_cancels_the_running_reply_and_truncates_at_the_played_position() -> None:
    p = protocol()
    p.receive({"type": "response.created", "response": {"id": "resp_1"}})
    assert p.interrupt("item_1", 180) == [
        {"type": "response.cancel"},
        {"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0, "audio_end_ms": 180},
    ]
    p.receive({"type": "response.done", "response": {"id": "resp_1"}})
    assert p.interrupt(None, 0) == []  # nothing running, nothing to truncate


def test_a_restored_reply_is_cut_to_what_the_caller_heard() -> None:
    p = protocol()
    p.receive(
        {"type": "conversation.item.input_audio_transcription.completed", "item_id": "u1", "transcript": "Hi"}
    )
    p.receive(audio_delta("a1", b"\x01" * 8000))  # 1000 ms of reply audio
    text = "one two three four five six seven eight nine ten"
    p.receive(
        {
            "type": "response.audio_transcript.done",
            "response_id": "resp_1",
            "item_id": "a1",
            "transcript": text,
        }
    )
    p.truncate("a1", 500)  # the caller heard half of it
    p.add_user_text("[keypad: 1]")
    restored = [(e["item"]["role"], e["item"]["content"][0]["text"]) for e in p.restore_events()]
    assert restored == [("user", "Hi"), ("assistant", "one two three four five"), ("user", "[keypad: 1]")]
    assert all(e["type"] == "conversation.item.create" for e in p.restore_events())


def test_a_pcma_reply_is_measured_in_pcma_milliseconds() -> None:
    p = protocol(codec=Codec.PCMA)
    p.receive(audio_delta("a1", b"\xd5" * 1600))  # 200 ms
    p.receive({"type": "response.audio_transcript.done", "item_id": "a1", "transcript": "aa bb cc dd"})
    p.truncate("a1", 200)
    [(event)] = p.restore_events()
    assert event["item"]["content"][0]["text"] == "aa bb cc dd"  # all of it was heard


def test_function_calls_carry_the_name_announced_when_the_item_was_added() -> None:
    p = protocol()
    item = {"type": "function_call", "call_id": "call_9", "name": "order_status"}
    assert p.receive({"type": "response.output_item.added", "item": item}) is None
    event = p.receive(
        {
            "type": "response.function_call_arguments.done",
            "call_id": "call_9",
            "arguments": '{"order_id": "42"}',
            "item_id": "fc_1",
            "response_id": "resp_2",
        }
    )
    assert event == FunctionCall("call_9", "order_status", '{"order_id": "42"}', "fc_1", "resp_2")
    assert p.function_output("call_9", '{"ok": true}') == {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "call_9", "output": '{"ok": true}'},
    }


def test_speech_and_errors_become_events() -> None:
    p = protocol()
    started = {"type": "input_audio_buffer.speech_started", "item_id": "u2", "audio_start_ms": 40}
    assert p.receive(started) == SpeechStarted("u2", 40)
    stopped = {"type": "input_audio_buffer.speech_stopped", "item_id": "u2", "audio_end_ms": 900}
    assert p.receive(stopped) == SpeechStopped("u2", 900)
    transcript = {"type": "conversation.item.input_audio_transcription.completed", "item_id": "u2"}
    assert p.receive(transcript) == InputTranscript("u2", "")
    error = p.receive(
        {"type": "error", "error": {"type": "invalid_request_error", "code": "bad", "message": "no"}}
    )
    assert isinstance(error, ServiceError) and (error.code, error.message) == ("bad", "no")
    assert p.receive({"type": "session.updated"}) is None  # known to the service, nothing for the call


def test_only_uncommitted_audio_is_replayed_after_a_drop() -> None:
    p = protocol()
    for _ in range(5):
        p.audio_sent(b"\x01" * 160)  # 100 ms
    p.receive({"type": "input_audio_buffer.speech_stopped", "item_id": "u1", "audio_end_ms": 60})
    p.receive(
        {"type": "input_audio_buffer.committed", "item_id": "u1"}
    )  # the first 60 ms are in the conversation
    for _ in range(2):
        p.audio_sent(b"\x02" * 160)
    replay = p.take_audio_to_restore()
    assert b"".join(replay) == b"\x01" * 320 + b"\x02" * 320  # whole frames from the one holding ms 60 on
    assert p.audio_bytes_sent == 7 * 160
    p.connection_started()
    assert p.conn_sent == 0 and p.take_audio_to_restore() == []


def test_manual_commits_mark_the_replay_point() -> None:
    p = protocol()
    p.audio_sent(b"\x01" * 160)
    assert p.commit() == {"type": "input_audio_buffer.commit"}
    p.audio_sent(b"\x02" * 160)
    p.receive({"type": "input_audio_buffer.committed"})
    assert p.take_audio_to_restore() == [b"\x02" * 160]


def test_the_outage_backlog_drops_the_oldest_audio_first() -> None:
    p = protocol(outage_ms=40)  # 320 bytes of G.711
    for value in (1, 2, 3):
        p.outage.append(bytes([value]) * 160)
    assert p.outage.dropped == 160
    assert p.take_audio_to_restore() == [b"\x02" * 160, b"\x03" * 160]  # the freshest speech survives


def test_a_backlog_put_back_after_a_failed_send_is_still_dropped_oldest_first() -> None:
    backlog = AudioBacklog(320)
    backlog.append(b"\x02" * 160)
    backlog.append(b"\x03" * 160)
    backlog.prepend(b"\x01" * 160)  # older than what is queued: it goes first when full
    assert backlog.take() == [b"\x02" * 160, b"\x03" * 160]
    assert backlog.dropped == 160 and len(backlog) == 0


@pytest.mark.parametrize("data", [b"", b"\x00\xff" * 80])
def test_append_events_are_pre_encoded_json(data: bytes) -> None:
    import json

    assert json.loads(append_event(data)) == {
        "type": "input_audio_buffer.append",
        "audio": base64.b64encode(data).decode(),
    }
