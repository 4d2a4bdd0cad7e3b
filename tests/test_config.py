"""Settings: the variable names people set, short variable names ignored, errors that name the variable."""

from __future__ import annotations

import pytest

from voicelive_sip.config import ConfigError, Settings, SipSettings, load_settings


def test_documented_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIP_USER", "bot@sip.example.com")
    monkeypatch.setenv("SIP_PORT", "5070")
    monkeypatch.setenv("AUTH_PASSWORD", "s3cret")
    monkeypatch.setenv("REGISTER_WITH_SIP_SERVER", "true")
    monkeypatch.setenv("MEDIA_PORT_COUNT", "200")
    monkeypatch.setenv("AZURE_VOICELIVE_ENDPOINT", "https://example.cognitiveservices.azure.com")
    monkeypatch.setenv("VOICE_LIVE_VOICE", "alloy")
    monkeypatch.setenv("GATEWAY_TRANSFER_ALLOWED", "sip:desk@pbx,+1555")
    settings = load_settings()
    assert settings.sip.user == "bot@sip.example.com" and settings.sip.port == 5070
    assert (
        settings.sip.auth_password is not None and settings.sip.auth_password.get_secret_value() == "s3cret"
    )
    assert settings.sip.register_enabled and settings.media.port_count == 200
    assert settings.voicelive.endpoint.startswith("https://example") and settings.voicelive.voice == "alloy"
    assert settings.gateway.transfer_allowed == ["sip:desk@pbx", "+1555"]
    assert "s3cret" not in repr(settings)


def test_ordinary_shell_variables_are_not_taken_for_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "USER": "alice",
        "PORT": "7777",
        "ENDPOINT": "x",
        "ADDRESS": "10.9.9.9",
        "SERVER": "s",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.sip.user is None and settings.sip.port == 5060 and settings.sip.server is None
    assert settings.media.port == 10000 and settings.media.address == "127.0.0.1"
    assert settings.voicelive.endpoint == ""  # unset: a gateway refuses to start, never a silent default


def test_keyword_construction_by_field_name() -> None:
    assert SipSettings(port=0, user="x@y").port == 0


def test_every_problem_is_listed_with_its_variable_and_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIP_PORT", "70000")
    monkeypatch.setenv("MEDIA_PORT", "abc")
    monkeypatch.setenv("VOICE_LIVE_VAD_THRESHOLD", "5")
    monkeypatch.setenv("GATEWAY_UNAVAILABLE_STATUS", "500")
    with pytest.raises(ConfigError) as info:
        load_settings()
    names = [line.split(":")[0] for line in info.value.problems]
    assert names == ["SIP_PORT", "MEDIA_PORT", "VOICE_LIVE_VAD_THRESHOLD", "GATEWAY_UNAVAILABLE_STATUS"]


def test_wildcard_binds_without_an_advertised_address_are_flagged() -> None:
    from voicelive_sip.aio import advertised_address_problems
    from voicelive_sip.config import MediaSettings

    def problems_of(sip: SipSettings, media: MediaSettings) -> list[str]:
        return advertised_address_problems(sip.agent_options(media))

    assert problems_of(SipSettings(), MediaSettings()) == []
    problems = problems_of(SipSettings(local_address="0.0.0.0"), MediaSettings(address="0.0.0.0"))
    assert [p.split()[0] for p in problems] == ["SIP_LOCAL_ADDRESS", "MEDIA_ADDRESS"]
    fixed = problems_of(
        SipSettings(local_address="0.0.0.0", via_address="192.0.2.10"),
        MediaSettings(address="0.0.0.0", public_address="192.0.2.10"),
    )
    assert fixed == []


def test_media_codecs_prefer_g722_and_take_any_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    from voicelive_sip.codecs.names import Codec

    assert load_settings().media.codecs == [Codec.G722, Codec.PCMU, Codec.PCMA]
    monkeypatch.setenv("MEDIA_CODECS", "pcmu, g722,PCMU,alaw")
    assert load_settings().media.codecs == [Codec.PCMU, Codec.G722, Codec.PCMA]  # duplicates dropped


@pytest.mark.parametrize(
    ("value", "message"), [("PCMU,G729", "'G729'"), ("opus", "not a SIP codec"), (",", "empty")]
)
def test_a_bad_media_codecs_is_one_short_problem_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("MEDIA_CODECS", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    (problem,) = info.value.problems
    assert problem.startswith("MEDIA_CODECS") and message in problem, problem
    assert len(problem) < 200, problem
