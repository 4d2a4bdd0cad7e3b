"""The `session.update` payload, built from settings so every configured option reaches the service."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from azure.ai.voicelive.models import OpenAIVoiceName

from voicelive_sip.config import VoiceLiveSettings
from voicelive_sip.voicelive.audio import WireFormat

_OPENAI_VOICES = frozenset(v.value for v in OpenAIVoiceName)
_TOOL_CHOICE_LITERALS = frozenset({"auto", "none", "required"})


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def build_voice(s: VoiceLiveSettings) -> dict[str, Any]:
    """OpenAI voice by name, or an Azure standard/custom/personal voice with its parameters."""
    kind = s.voice_type
    if kind == "auto":
        kind = "openai" if s.voice in _OPENAI_VOICES else "azure-standard"
    if kind == "openai":
        return {"type": "openai", "name": s.voice}
    voice: dict[str, Any] = {"type": kind, "name": s.voice}
    if kind == "azure-custom":
        if not s.voice_endpoint_id:
            raise ValueError("an azure-custom voice needs VOICE_LIVE_VOICE_ENDPOINT_ID")
        voice["endpoint_id"] = s.voice_endpoint_id
    elif kind == "azure-personal":
        voice["model"] = s.voice_personal_model
    voice.update(
        _drop_none(
            {
                "temperature": s.voice_temperature,
                "style": s.voice_style,
                "rate": s.voice_rate,
                "pitch": s.voice_pitch,
                "volume": s.voice_volume,
                "locale": s.voice_locale,
            }
        )
    )
    return voice


def build_turn_detection(s: VoiceLiveSettings) -> dict[str, Any] | None:
    """server_vad or an azure_semantic_vad variant with all its parameters; None means manual turns."""
    if s.vad_type == "none":
        return None
    td: dict[str, Any] = {
        "type": s.vad_type,
        "threshold": s.vad_threshold,
        "prefix_padding_ms": s.vad_prefix_padding_ms,
        "silence_duration_ms": s.vad_silence_duration_ms,
        "create_response": s.vad_create_response,
        "interrupt_response": s.vad_interrupt_response,
        "auto_truncate": s.vad_auto_truncate,
    }
    if s.vad_type != "server_vad":
        td["remove_filler_words"] = s.vad_remove_filler_words
        if s.vad_speech_duration_ms is not None:
            td["speech_duration_ms"] = s.vad_speech_duration_ms
        # The English-only variant has no language list (SDK model AzureSemanticVadEn).
        if s.vad_languages and s.vad_type != "azure_semantic_vad_en":
            td["languages"] = list(s.vad_languages)
    if s.vad_eou_model != "none":
        td["end_of_utterance_detection"] = _drop_none(
            {
                "model": s.vad_eou_model,
                "threshold_level": s.vad_eou_threshold_level,
                "timeout_ms": s.vad_eou_timeout_ms,
            }
        )
    return td


def build_tool_choice(choice: str) -> str | dict[str, str]:
    """auto/none/required as given; any other value names the one function the model must call."""
    return choice if choice in _TOOL_CHOICE_LITERALS else {"type": "function", "name": choice}


# What a Foundry agent owns (set in the Foundry portal): a session on an agent never sends these.
AGENT_OWNED = frozenset(
    {"model", "instructions", "tools", "tool_choice", "temperature", "max_response_output_tokens"}
)


def build_session(
    s: VoiceLiveSettings, wire: WireFormat, tools: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """The `session` object of `session.update`; on a Foundry agent, only what the agent leaves to us
    (audio formats, turn detection, voice, transcription, audio processing)."""
    session: dict[str, Any] = {
        "model": s.model,
        "modalities": list(s.modalities),
        "instructions": s.instructions,
        "voice": build_voice(s),
        "input_audio_format": wire.input_audio_format,
        "output_audio_format": wire.output_audio_format,
        "turn_detection": build_turn_detection(s),
        "tools": [dict(t) for t in tools],
        "tool_choice": build_tool_choice(s.tool_choice),
        "max_response_output_tokens": s.max_response_output_tokens,
    }
    if not wire.is_g711:
        session["input_audio_sampling_rate"] = wire.sample_rate
    if s.temperature is not None:
        session["temperature"] = s.temperature
    if s.transcription_model != "none":
        transcription: dict[str, Any] = {"model": s.transcription_model}
        if s.transcription_language:
            transcription["language"] = s.transcription_language
        if s.transcription_phrase_list:
            transcription["phrase_list"] = list(s.transcription_phrase_list)
        session["input_audio_transcription"] = transcription
    if s.noise_reduction != "none":
        session["input_audio_noise_reduction"] = {"type": s.noise_reduction}
    if s.echo_cancellation != "none":
        session["input_audio_echo_cancellation"] = {
            "type": "server_echo_cancellation",
            "reference_source": s.echo_cancellation,
        }
    if s.is_agent:
        return {key: value for key, value in session.items() if key not in AGENT_OWNED}
    return session


def greeting_response(s: VoiceLiveSettings) -> dict[str, Any] | None:
    """`response.create` params of the proactive greeting: our text verbatim, or the model's own words."""
    if not s.proactive_greeting_enabled:
        return None
    default = VoiceLiveSettings.model_fields["proactive_greeting"].default
    if not s.proactive_greeting or (s.is_agent and s.proactive_greeting == default):
        # An agent greets in its own words unless a greeting of its own was configured.
        return {}
    # pre_generated_assistant_message makes the service speak our sentence instead of generating one.
    return {
        "pre_generated_assistant_message": {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": s.proactive_greeting}],
        }
    }
