"""Settings from the environment, and every option arriving in the `session.update` the service receives."""

from __future__ import annotations

from typing import Any

import pytest

from voicelive_sip.config import VoiceLiveSettings
from voicelive_sip.testing import FakeVoiceLive
from voicelive_sip.voicelive import VoiceLiveSession

SEED_ENV = {
    "AZURE_VOICELIVE_ENDPOINT": "wss://contoso.cognitiveservices.azure.com/openai/realtime",
    "AZURE_VOICELIVE_API_KEY": "abc123",
    "VOICE_LIVE_MODEL": "gpt-4o-mini",
    "VOICE_LIVE_VOICE": "en-US-JennyNeural",
    "VOICE_LIVE_INSTRUCTIONS": "You are Contoso's assistant.",
    "VOICE_LIVE_MAX_RESPONSE_OUTPUT_TOKENS": "200",
    "VOICE_LIVE_PROACTIVE_GREETING_ENABLED": "false",
    "VOICE_LIVE_PROACTIVE_GREETING": "Thank you for calling Contoso.",
}


def test_seed_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SEED_ENV.items():
        monkeypatch.setenv(name, value)
    s = VoiceLiveSettings()
    assert s.endpoint == SEED_ENV["AZURE_VOICELIVE_ENDPOINT"]
    assert s.api_key is not None and s.api_key.get_secret_value() == "abc123"
    assert "abc123" not in repr(s)
    assert (s.model, s.voice, s.instructions) == (
        "gpt-4o-mini",
        "en-US-JennyNeural",
        "You are Contoso's assistant.",
    )
    assert s.max_response_output_tokens == 200
    assert s.proactive_greeting_enabled is False
    assert s.proactive_greeting == "Thank you for calling Contoso."


def test_new_options_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_LIVE_VAD_TYPE", "azure_semantic_vad_multilingual")
    monkeypatch.setenv("VOICE_LIVE_VAD_LANGUAGES", "en-US, de-DE")
    monkeypatch.setenv("VOICE_LIVE_MODALITIES", "audio,text")
    monkeypatch.setenv("VOICE_LIVE_AUDIO_FORMAT", "pcm16_16000")
    monkeypatch.setenv("VOICE_LIVE_CONNECT_TIMEOUT", "2.5")
    s = VoiceLiveSettings()
    assert s.vad_type == "azure_semantic_vad_multilingual"
    assert s.vad_languages == ["en-US", "de-DE"]
    assert s.modalities == ["audio", "text"]
    assert (s.audio_format, s.connect_timeout) == ("pcm16_16000", 2.5)


def test_every_field_is_described() -> None:
    missing = [name for name, f in VoiceLiveSettings.model_fields.items() if not f.description]
    assert missing == []


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="vad_type"):
        VoiceLiveSettings(vad_type="loud")
    with pytest.raises(ValueError, match="connect_timeout"):
        VoiceLiveSettings(connect_timeout=0)


TOOL = {
    "type": "function",
    "name": "order_status",
    "description": "Look up an order",
    "parameters": {
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    },
}

CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (  # the defaults: server VAD as the seed tuned it, Azure voice, G.711 pass-through
        {},
        {
            "model": "gpt-4o",
            "modalities": ["text", "audio"],
            "voice": {"type": "azure-standard", "name": "en-US-AvaNeural"},
            "input_audio_format": "g711_ulaw",
            "output_audio_format": "g711_ulaw",
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 200,
                "silence_duration_ms": 400,
                "create_response": True,
                "interrupt_response": True,
                "auto_truncate": False,
            },
            "input_audio_transcription": {"model": "azure-speech"},
            "input_audio_noise_reduction": {"type": "azure_deep_noise_suppression"},
            "tool_choice": "auto",
            "temperature": 0.8,
            "max_response_output_tokens": "inf",
        },
    ),
    (
        {
            "model": "gpt-realtime",
            "instructions": "Speak like a pirate.",
            "voice": "coral",
            "modalities": ["audio", "text"],
            "temperature": 1.1,
            "max_response_output_tokens": 150,
            "transcription_model": "gpt-4o-transcribe",
            "transcription_language": "en",
            "transcription_phrase_list": ["Contoso", "Fabrikam"],
            "noise_reduction": "far_field",
            "echo_cancellation": "server",
            "tool_choice": "order_status",
        },
        {
            "model": "gpt-realtime",
            "instructions": "Speak like a pirate.",
            "voice": {"type": "openai", "name": "coral"},
            "modalities": ["audio", "text"],
            "temperature": 1.1,
            "max_response_output_tokens": 150,
            "input_audio_transcription": {
                "model": "gpt-4o-transcribe",
                "language": "en",
                "phrase_list": ["Contoso", "Fabrikam"],
            },
            "input_audio_noise_reduction": {"type": "far_field"},
            "input_audio_echo_cancellation": {
                "type": "server_echo_cancellation",
                "reference_source": "server",
            },
            "tool_choice": {"type": "function", "name": "order_status"},
            "tools": [TOOL],
        },
    ),
    (
        {
            "voice": "en-US-Ava:DragonHDLatestNeural",
            "voice_temperature": 0.7,
            "voice_style": "cheerful",
            "voice_rate": "1.1",
            "voice_pitch": "+5%",
            "voice_volume": "loud",
            "voice_locale": "en-US",
            "vad_type": "azure_semantic_vad",
            "vad_threshold": 0.3,
            "vad_prefix_padding_ms": 300,
            "vad_silence_duration_ms": 600,
            "vad_speech_duration_ms": 80,
            "vad_remove_filler_words": True,
            "vad_languages": ["en", "es"],
            "vad_create_response": False,
            "vad_interrupt_response": False,
            "vad_auto_truncate": True,
            "vad_eou_model": "semantic_detection_v1",
            "vad_eou_threshold_level": "high",
            "vad_eou_timeout_ms": 2000,
            "transcription_model": "none",
            "noise_reduction": "none",
            "temperature": None,
            "tool_choice": "required",
        },
        {
            "voice": {
                "type": "azure-standard",
                "name": "en-US-Ava:DragonHDLatestNeural",
                "temperature": 0.7,
                "style": "cheerful",
                "rate": "1.1",
                "pitch": "+5%",
                "volume": "loud",
                "locale": "en-US",
            },
            "turn_detection": {
                "type": "azure_semantic_vad",
                "threshold": 0.3,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 600,
                "speech_duration_ms": 80,
                "remove_filler_words": True,
                "languages": ["en", "es"],
                "create_response": False,
                "interrupt_response": False,
                "auto_truncate": True,
                "end_of_utterance_detection": {
                    "model": "semantic_detection_v1",
                    "threshold_level": "high",
                    "timeout_ms": 2000,
                },
            },
            "tool_choice": "required",
        },
    ),
    (
        {
            "voice": "MyBrandVoice",
            "voice_type": "azure-custom",
            "voice_endpoint_id": "0123-abcd",
            "vad_type": "none",
        },
        {
            "voice": {"type": "azure-custom", "name": "MyBrandVoice", "endpoint_id": "0123-abcd"},
            "turn_detection": None,
        },
    ),
    (
        {
            "voice": "speaker-profile-1",
            "voice_type": "azure-personal",
            "voice_personal_model": "PhoenixLatestNeural",
        },
        {"voice": {"type": "azure-personal", "name": "speaker-profile-1", "model": "PhoenixLatestNeural"}},
    ),
    (
        {"vad_type": "azure_semantic_vad_en", "vad_languages": ["en"], "echo_cancellation": "client"},
        {
            "turn_detection": {
                "type": "azure_semantic_vad_en",
                "threshold": 0.5,
                "prefix_padding_ms": 200,
                "silence_duration_ms": 400,
                "remove_filler_words": False,
                "create_response": True,
                "interrupt_response": True,
                "auto_truncate": False,
            },
            "input_audio_echo_cancellation": {
                "type": "server_echo_cancellation",
                "reference_source": "client",
            },
        },
    ),
    (
        {
            "audio_format": "pcm16_24000",
            "vad_type": "azure_semantic_vad_multilingual",
            "vad_languages": ["fr"],
        },
        {
            "input_audio_format": "pcm16",
            "input_audio_sampling_rate": 24000,
            "output_audio_format": "pcm16",
        },
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), CASES)
async def test_options_reach_the_service_in_session_update(
    overrides: dict[str, Any], expected: dict[str, Any]
) -> None:
    async with FakeVoiceLive() as fake:
        settings = fake.settings(**overrides)
        tools = [TOOL] if "tools" in expected else []
        async with VoiceLiveSession(settings, tools=tools):
            await fake.wait_for(lambda f: "session.update" in f.received_types)
        sent = next(e for e in fake.received_events if e["type"] == "session.update")["session"]
        assert fake.connections[0].query["model"] == settings.model
    for key, value in expected.items():
        assert sent[key] == value, key
    if settings.vad_type == "azure_semantic_vad_multilingual":
        assert sent["turn_detection"]["languages"] == settings.vad_languages
    if "input_audio_transcription" not in expected and settings.transcription_model == "none":
        assert "input_audio_transcription" not in sent
    if settings.noise_reduction == "none":
        assert "input_audio_noise_reduction" not in sent
    if settings.temperature is None:
        assert "temperature" not in sent


def test_custom_voice_without_endpoint_id_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="VOICE_LIVE_VOICE_ENDPOINT_ID"):
        VoiceLiveSession(VoiceLiveSettings(voice="X", voice_type="azure-custom"))
