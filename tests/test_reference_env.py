"""Drop-in settings: the reference gateway's `.env.template` read as it is; every setting from a string."""

from __future__ import annotations

import shutil
import typing
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from voicelive_sip.aio import UserAgent
from voicelive_sip.codecs.names import Codec
from voicelive_sip.config import ConfigError, Settings, load_settings
from voicelive_sip.settings_group import env_name
from voicelive_sip.voicelive.audio import wire_format
from voicelive_sip.voicelive.session_config import build_session

TEMPLATE = Path(__file__).parent / "data" / "reference" / "env.template"


@pytest.fixture
def reference_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The template as the `.env` of the working directory, with nothing else set."""
    for group in Settings.group_models().values():
        for name in group.model_fields:
            monkeypatch.delenv(env_name(group, name), raising=False)
    for name in ("SIP_USER", "SIP_SERVER", "AUTH_PASSWORD", "AZURE_VOICELIVE_API_KEY", "VOICE_LIVE_LOG_FILE"):
        monkeypatch.delenv(name, raising=False)
    shutil.copy(TEMPLATE, tmp_path / ".env")
    monkeypatch.chdir(tmp_path)
    return load_settings()


def test_each_reference_variable_does_what_it_did_there(reference_env: Settings) -> None:
    s = reference_env
    sip = s.sip.agent_options(s.media)
    # SIP: the identity is sip:{SIP_USER}@{SIP_SERVER's host}; digest user and realm as given.
    assert (sip.server, sip.port, sip.user) == ("127.0.0.1:5080", 5070, "voicelive-bot")
    ua = UserAgent(sip)
    assert str(ua.aor) == "sip:voicelive-bot@127.0.0.1"
    assert (sip.auth_user, sip.auth_realm, sip.register_enabled) == ("voicelive-bot", "sip.example.com", True)
    assert sip.auth_password is None  # AUTH_PASSWORD= : no password, not an empty one
    assert sip.display_name == "Voice Live Bot"
    # Network.
    assert (sip.local_address, sip.via_address) == ("0.0.0.0", "10.0.1.20")
    assert (s.media.address, s.media.port, s.media.port_count) == ("10.0.1.20", 10000, 1000)
    # Voice Live: endpoint kept as given; AZURE_VOICELIVE_API_KEY= means Entra ID, as there.
    v = s.voicelive
    assert v.endpoint == "wss://xxxxxx.cognitiveservices.azure.com/openai/realtime" and v.api_key is None
    session = build_session(v, wire_format(v.audio_format, Codec.PCMU))
    assert session["model"] == "gpt-4o"
    assert session["voice"]["name"] == "en-US-AvaNeural"
    assert session["instructions"].startswith("You are a helpful customer service assistant for Contoso")
    assert session["max_response_output_tokens"] == 200
    assert session["input_audio_transcription"] == {"model": "whisper-1"}  # TRANSCRIPTION_LANGUAGE= : none
    assert v.proactive_greeting_enabled
    assert v.proactive_greeting.startswith("Thank you for calling Contoso")
    # Logging.
    assert (s.logging.level, s.logging.file) == ("INFO", "logs/gateway.log")


def test_a_full_sip_user_uri_is_used_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIP_SERVER", "127.0.0.1:5080")
    for user, aor in [
        ("bot@sip.example.com", "sip:bot@sip.example.com"),
        ("sip:bot@sip.example.com:5062", "sip:bot@sip.example.com:5062"),
    ]:
        monkeypatch.setenv("SIP_USER", user)
        assert str(UserAgent(load_settings().sip).aor) == aor


async def test_a_bare_sip_user_without_a_server_is_at_our_own_address() -> None:
    from voicelive_sip.config import SipSettings

    sip = SipSettings(user="alice", server=None, local_address="127.0.0.1", via_address="192.0.2.1", port=0)
    async with UserAgent(sip) as ua:
        assert (ua.aor.user, ua.aor.host, ua.aor.port) == ("alice", "192.0.2.1", ua.address[1])


def test_an_empty_greeting_is_a_value_the_other_empties_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_LIVE_PROACTIVE_GREETING", "")
    monkeypatch.setenv("SIP_VIA_ADDR", "")
    monkeypatch.setenv("LOG_LEVEL", "")
    monkeypatch.setenv("SIP_PORT", " ")
    s = load_settings()
    assert s.voicelive.proactive_greeting == ""  # the model greets from its instructions
    assert (s.sip.via_address, s.logging.level, s.sip.port) == (None, "INFO", 5060)


# -- every setting from the string the environment gives --------------------------------------------------


def _sample(annotation: Any, default: Any) -> tuple[str, Any]:
    """A value for a field, as the environment string and as the typed value the model should hold."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is typing.Annotated:
        return _sample(args[0], default)
    if origin is typing.Literal:
        # The last choice (not the default): a field only its default could be set to would pass unnoticed.
        choice = args[-1]
        return str(choice), choice
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        kinds = [a for a in args if a is not type(None)]
        literal = next((a for a in kinds if get_origin(a) is typing.Literal), None)
        if literal is not None and default is not None and not isinstance(default, str):
            return _sample(kinds[0], default)
        return _sample(kinds[0], None if default is None else default)
    if origin is list:
        item = args[0]
        if isinstance(default, list) and default:
            return ",".join(_text(v) for v in default), list(default)
        text, value = _sample(item, None)
        return text, [value]
    if annotation is bool:
        return ("false", False) if default else ("true", True)
    if annotation is int:
        value = (default if isinstance(default, int) else 0) + 1
        return str(value), value
    if annotation is float:
        value = (default if isinstance(default, float | int) else 0.0) + 0.5
        return str(value), value
    if annotation is SecretStr:
        return "s3cret", SecretStr("s3cret")
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        member = list(annotation)[-1]
        return str(member.value), member
    if annotation is str:
        return (default, default) if default else ("x", "x")
    raise AssertionError(f"no sample for {annotation!r}")


def _text(value: Any) -> str:
    return str(value.value) if isinstance(value, Enum) else str(value)


_SPECIAL: dict[str, tuple[str, Any]] = {
    # Values that must also pass the field's own validation.
    "AZURE_VOICELIVE_ENDPOINT": ("https://example.cognitiveservices.azure.com", None),
    "SIP_ALLOW_FROM": ("10.0.0.0/8", ["10.0.0.0/8"]),
    "MEDIA_TRUSTED_PEERS": ("192.0.2.0/24", ["192.0.2.0/24"]),
    "GATEWAY_TRANSFER_ALLOWED": ("sip:desk@pbx.example.com", ["sip:desk@pbx.example.com"]),
    "GATEWAY_OUTBOUND_ALLOWED": ("+4930XXXX", ["+4930XXXX"]),
    "WEBHOOK_URLS": ("https://hooks.example.com/a", ["https://hooks.example.com/a"]),
    "WEBRTC_ICE_SERVERS": ("stun:stun.example.com:3478", ["stun:stun.example.com:3478"]),
    "WEBRTC_ICE_ADDRESSES": ("192.0.2.10", ["192.0.2.10"]),
    "WEBRTC_ICE_PUBLIC_ADDRESS": ("203.0.113.7", "203.0.113.7"),
    "VOICE_LIVE_MODALITIES": ("audio,text", ["audio", "text"]),
    "SIP_TRANSPORTS": ("tcp", ["tcp"]),
    "MEDIA_CODECS": ("pcma", None),
    "VOICE_LIVE_MAX_RESPONSE_OUTPUT_TOKENS": ("200", 200),
    "SIP_REGISTER_EXPIRES": ("600", 600),
    "SIP_SESSION_EXPIRES": ("900", 900),
    "SIP_MIN_SE": ("120", 120),
    "SIP_MAX_TRANSACTIONS": ("1000", 1000),
    "VOICE_LIVE_VAD_THRESHOLD": ("0.25", 0.25),
    "METRICS_PORT": ("8161", 8161),
    "SIP_PORT": ("5070", 5070),
    "SIP_TLS_PORT": ("5071", 5071),
    "MEDIA_PORT": ("20000", 20000),
    "LOG_LEVEL": ("debug", "DEBUG"),
    "LOG_FORMAT": ("JSON", "json"),
}


def _cases() -> list[tuple[type[BaseSettings], str, str]]:
    return [
        (model, name, env_name(model, name))
        for model in Settings.group_models().values()
        for name in model.model_fields
    ]


@pytest.mark.parametrize(
    ("model", "field", "variable"), _cases(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_setting_parses_from_its_environment_string(
    model: type[BaseSettings], field: str, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = model.model_fields[field]
    default = info.get_default(call_default_factory=True)
    text, expected = _sample(info.annotation, default)
    if variable in _SPECIAL:
        text, override = _SPECIAL[variable]
        expected = text if override is None else override
    if variable == "MEDIA_CODECS":
        from voicelive_sip.codecs.names import Codec

        expected = [Codec.parse("pcma")]
    monkeypatch.setenv(variable, text)
    if variable == "SIP_TLS_KEY_FILE":
        monkeypatch.setenv("SIP_TLS_CERT_FILE", "cert.pem")  # a key alone is refused, rightly
    if variable == "SIP_TLS_REQUIRE_CLIENT_CERT":
        monkeypatch.setenv("SIP_TLS_CA_FILE", "ca.pem")
    try:
        value = getattr(model(), field)
    except Exception as error:  # a ValidationError names the field: show it with the string that failed
        raise AssertionError(f"{variable}={text!r}: {error}") from None
    if isinstance(expected, SecretStr):
        assert isinstance(value, SecretStr) and value.get_secret_value() == expected.get_secret_value()
    else:
        assert value == expected, f"{variable}={text!r} gave {value!r}"


def test_the_status_literals_that_once_failed_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIP_BUSY_STATUS", "503")
    monkeypatch.setenv("GATEWAY_UNAVAILABLE_STATUS", "480")
    s = load_settings()
    assert (s.sip.busy_status, s.gateway.unavailable_status) == (503, 480)
    monkeypatch.setenv("SIP_BUSY_STATUS", "500")
    with pytest.raises(ConfigError, match="SIP_BUSY_STATUS"):
        load_settings()


@pytest.mark.parametrize("endpoint", ["not-a-url", "ftp://example.com", "https://", "example.com"])
def test_an_endpoint_without_a_web_scheme_or_host_is_refused(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_VOICELIVE_ENDPOINT", endpoint)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.problems[0].startswith("AZURE_VOICELIVE_ENDPOINT:")


def test_the_endpoint_is_shown_without_its_query() -> None:
    from voicelive_sip.config import VoiceLiveSettings

    long = "https://r.cognitiveservices.azure.com/voice-live/realtime?api-version=2026-07-15&model=gpt-4o"
    assert VoiceLiveSettings(endpoint=long).endpoint_display == (
        "https://r.cognitiveservices.azure.com/voice-live/realtime"
    )
