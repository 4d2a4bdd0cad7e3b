"""Settings: one pydantic-settings model per group, environment names as in the reference gateway."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .aio.options import UserAgentOptions
from .codecs.names import Codec
from .errors import VoiceLiveSipError
from .logs import LoggingSettings
from .settings_group import SettingsGroup, env_name
from .targets import TargetPattern

if TYPE_CHECKING:
    from .rtp.session import RtpOptions

AudioFormat = Literal["g711", "g711_ulaw", "g711_alaw", "pcm16_16000", "pcm16_24000"]
VoiceType = Literal["auto", "openai", "azure-standard", "azure-custom", "azure-personal"]
VadType = Literal[
    "server_vad", "azure_semantic_vad", "azure_semantic_vad_en", "azure_semantic_vad_multilingual", "none"
]
EouModel = Literal[
    "none", "semantic_detection_v1", "semantic_detection_v1_en", "semantic_detection_v1_multilingual"
]
NoiseReduction = Literal["none", "azure_deep_noise_suppression", "near_field", "far_field"]
EchoCancellation = Literal["none", "server", "client"]


DTMF_KEYS = "0123456789*#ABCD"  # RFC 4733 §3.2 events 0-15


def _csv(value: object) -> object:
    # Lists come from the environment as "a,b,c", which reads better in a .env file than JSON.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class VoiceLiveSettings(SettingsGroup):
    """Azure AI Voice Live: endpoint, credentials and everything that goes into `session.update`."""

    model_config = SettingsConfigDict(
        env_prefix="VOICE_LIVE_", extra="ignore", populate_by_name=True, env_file=".env"
    )

    # Connection (the two AZURE_* names are the seed's; every other variable is VOICE_LIVE_<FIELD>).
    keeps_empty = frozenset({"proactive_greeting"})

    endpoint: str = Field(
        default="",
        validation_alias=AliasChoices("AZURE_VOICELIVE_ENDPOINT"),
        description="Voice Live endpoint: https://<resource>.cognitiveservices.azure.com (wss:// and a path "
        "such as /openai/realtime are accepted), or a FakeVoiceLive; required to take calls.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AZURE_VOICELIVE_API_KEY"),
        description="API key; when unset, Microsoft Entra ID is used through DefaultAzureCredential.",
    )
    api_version: str = Field(default="2026-07-15", description="The api-version query parameter.")
    credential_scope: str = Field(
        default="https://ai.azure.com/.default", description="Token scope for Entra ID authentication."
    )
    model: str = Field(default="gpt-4o", description="Model (deployment) the session runs on.")
    agent_name: str | None = Field(
        default=None,
        description="Microsoft Foundry agent to run the session on instead of the model (needs "
        "VOICE_LIVE_AGENT_PROJECT and Microsoft Entra ID); its instructions and tools are the agent's.",
    )
    agent_project: str | None = Field(default=None, description="Foundry project of VOICE_LIVE_AGENT_NAME.")
    agent_version: str | None = Field(
        default=None, description="Version of the Foundry agent (unset: the service's current version)."
    )
    agent_conversation_id: str | None = Field(
        default=None,
        description="Foundry conversation to continue (usually per call, from an earlier call's summary "
        "conversation_id).",
    )
    connect_timeout: float = Field(
        default=10.0, gt=0, description="Seconds allowed for the WebSocket handshake."
    )

    # Reconnect policy.
    reconnect_attempts: int = Field(
        default=5, ge=0, description="Reconnect attempts after an unexpected drop (0 = never reconnect)."
    )
    reconnect_initial_delay: float = Field(
        default=0.2, ge=0, description="Seconds before the first reconnect."
    )
    reconnect_max_delay: float = Field(
        default=5.0, ge=0, description="Upper bound of the exponential backoff."
    )
    reconnect_buffer_ms: int = Field(
        default=20_000,
        ge=0,
        description=(
            "Caller audio kept while Voice Live cannot take it (reconnecting, backed up), sent in order "
            "afterwards (ms); when full, the oldest audio is dropped first."
        ),
    )
    reconnect_replay_ms: int = Field(
        default=3_000,
        ge=0,
        description="Uncommitted caller audio resent to a new connection, so a drop loses no speech (ms).",
    )
    restore_max_items: int = Field(
        default=40, ge=0, description="Transcript items replayed into a new connection to restore context."
    )

    # Conversation.
    instructions: str = Field(
        default="You are a helpful voice assistant on a phone call. Be friendly and concise.",
        description="System prompt.",
    )
    modalities: Annotated[list[Literal["text", "audio"]], NoDecode] = Field(
        default=["text", "audio"], description="Response modalities, comma-separated."
    )
    temperature: float | None = Field(
        default=0.8, description="Sampling temperature (unset: service default)."
    )
    max_response_output_tokens: int | Literal["inf"] = Field(
        default="inf", description="Max output tokens per response, or inf."
    )
    tool_choice: str = Field(default="auto", description="auto, none, required, or the name of one function.")
    proactive_greeting_enabled: bool = Field(
        default=True, description="Speak first when the call is answered."
    )
    proactive_greeting: str = Field(
        default="Hello! How can I help you today?",
        description="What the agent says first, verbatim; empty lets the model greet from its instructions.",
    )

    # Voice.
    voice: str = Field(default="en-US-AvaNeural", description="OpenAI voice name or Azure voice name.")
    voice_type: VoiceType = Field(
        default="auto", description="auto: OpenAI names are openai voices, anything else azure-standard."
    )
    voice_temperature: float | None = Field(default=None, description="Azure voice temperature.")
    voice_style: str | None = Field(default=None, description="Azure voice speaking style.")
    voice_rate: str | None = Field(default=None, description="Azure voice rate, e.g. 1.1 or +10%.")
    voice_pitch: str | None = Field(default=None, description="Azure voice pitch, e.g. +5%.")
    voice_volume: str | None = Field(default=None, description="Azure voice volume, e.g. loud.")
    voice_locale: str | None = Field(default=None, description="Azure voice locale, e.g. en-US.")
    voice_endpoint_id: str | None = Field(default=None, description="Deployment id of an azure-custom voice.")
    voice_personal_model: str = Field(
        default="DragonLatestNeural", description="Base model of an azure-personal voice."
    )

    # Audio.
    audio_format: AudioFormat = Field(
        default="g711",
        description="g711: pass the call's G.711 law through; g711_ulaw/g711_alaw: force a law; "
        "pcm16_16000/pcm16_24000: decode and resample.",
    )
    noise_reduction: NoiseReduction = Field(
        default="azure_deep_noise_suppression", description="Input noise reduction."
    )
    echo_cancellation: EchoCancellation = Field(
        default="none", description="Server echo cancellation and its reference source (server or client)."
    )

    # Input transcription.
    transcription_model: str = Field(
        default="azure-speech", description="Caller transcription model, or none."
    )
    transcription_language: str | None = Field(
        default=None, description="Transcription language, e.g. en-US."
    )
    transcription_phrase_list: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Phrase hints for azure-speech, comma-separated."
    )

    # Turn detection.
    vad_type: VadType = Field(default="server_vad", description="Turn detection; none means manual turns.")
    vad_threshold: float = Field(default=0.5, ge=0, le=1, description="Speech probability threshold.")
    vad_prefix_padding_ms: int = Field(
        default=200, ge=0, description="Audio kept before detected speech (ms)."
    )
    vad_silence_duration_ms: int = Field(default=400, ge=0, description="Silence that ends a turn (ms).")
    vad_speech_duration_ms: int | None = Field(
        default=None, ge=0, description="Minimum speech that starts a turn (semantic VAD only, ms)."
    )
    vad_remove_filler_words: bool = Field(default=False, description="Ignore um/uh (semantic VAD only).")
    vad_languages: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Languages for semantic VAD, comma-separated."
    )
    vad_create_response: bool = Field(default=True, description="Reply automatically at the end of a turn.")
    vad_interrupt_response: bool = Field(
        default=True, description="Caller speech interrupts a running reply."
    )
    vad_auto_truncate: bool = Field(
        default=False, description="Let the service truncate on interruption (we truncate at the ms played)."
    )
    vad_eou_model: EouModel = Field(default="none", description="Semantic end-of-utterance detection model.")
    vad_eou_threshold_level: Literal["low", "medium", "high", "default"] = Field(
        default="default", description="End-of-utterance threshold level."
    )
    vad_eou_timeout_ms: int | None = Field(default=None, ge=0, description="End-of-utterance timeout (ms).")

    _split_lists = field_validator("modalities", "transcription_phrase_list", "vad_languages", mode="before")(
        _csv
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_a_web_address(cls, value: str) -> str:
        value = value.strip()
        if value:
            parts = urlsplit(value)
            if parts.scheme.lower() not in ("https", "wss", "http", "ws"):
                raise ValueError("must start with https:// (or wss://; http:// and ws:// for a local fake)")
            if not parts.hostname:
                raise ValueError("names no host, e.g. https://<resource>.cognitiveservices.azure.com")
        return value

    @property
    def is_agent(self) -> bool:
        """Whether sessions run on a Foundry agent (VOICE_LIVE_AGENT_NAME) rather than a model."""
        return bool(self.agent_name)

    @property
    def endpoint_display(self) -> str:
        """The endpoint as scheme://host[:port]/path, without the query (short enough for one line)."""
        parts = urlsplit(self.endpoint)
        return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/") if parts.netloc else self.endpoint


Transport = Literal["udp", "tcp"]
SrtpPolicy = Literal["off", "optional", "required"]


def _default_transports() -> list[Transport]:
    return ["udp", "tcp"]


def _default_codecs() -> list[Codec]:
    # Wideband first: a caller that offers G.722 gets it (16 kHz to the model); G.711 otherwise.
    return [Codec.G722, Codec.PCMU, Codec.PCMA]


def _codecs(value: object) -> object:
    # MEDIA_CODECS=pcmu,alaw works too: every spelling of a codec in use maps to the one `Codec` name.
    value = _csv(value)
    if not isinstance(value, list):
        return value
    sip = ", ".join(codec.value for codec in Codec.sip())
    if not value:
        raise ValueError(f"empty: name one or more of {sip}")
    codecs = []
    for item in value:
        try:
            codec = Codec.parse(item) if isinstance(item, str) else Codec(item)
        except ValueError:
            raise ValueError(f"unknown codec {item!r}, expected some of {sip}") from None
        if not codec.on_sip:
            raise ValueError(f"{codec.value} is not a SIP codec, expected some of {sip}")
        codecs.append(codec)
    return list(dict.fromkeys(codecs))


class SipSettings(SettingsGroup):
    """The SIP user agent: where it listens, who it is, registration, limits and timers."""

    model_config = SettingsConfigDict(
        env_prefix="SIP_", extra="ignore", populate_by_name=True, env_file=".env"
    )

    local_address: str = Field(
        default="127.0.0.1",
        validation_alias=AliasChoices("SIP_LOCAL_ADDRESS"),
        description="Address the SIP transports bind to (0.0.0.0 for all interfaces).",
    )
    port: int = Field(
        default=5060,
        ge=0,
        le=65535,
        validation_alias=AliasChoices("SIP_PORT"),
        description="SIP port for UDP and TCP (0 picks a free port).",
    )
    via_address: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SIP_VIA_ADDR"),
        description="Address written into Via and Contact (NAT); defaults to the bound address.",
    )
    transports: Annotated[list[Transport], NoDecode] = Field(
        default_factory=_default_transports, description="Transports to listen on, comma-separated."
    )
    server: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SIP_SERVER"),
        description="PBX / registrar / outbound proxy: host[:port] (with ;transport=tcp for TCP).",
    )
    user: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SIP_USER"),
        description="Our SIP identity (AOR), e.g. bot@sip.example.com.",
    )
    auth_user: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AUTH_USER"),
        description="Digest username towards the server (defaults to the user part of SIP_USER).",
    )
    auth_realm: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AUTH_REALM"),
        description="Digest realm to answer; unset answers any realm the server names.",
    )
    auth_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AUTH_PASSWORD"),
        description="Digest password towards the server.",
    )
    register_enabled: bool = Field(
        default=False,
        validation_alias=AliasChoices("REGISTER_WITH_SIP_SERVER"),
        description="Register SIP_USER with SIP_SERVER.",
    )
    register_expires: int = Field(default=3600, ge=60, description="Registration lifetime asked for (s).")
    display_name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DISPLAY_NAME"),
        description="Display name in From and Contact.",
    )
    user_agent: str = Field(default="voicelive-sip", description="User-Agent / Server header value.")
    max_calls: int = Field(default=100, ge=1, description="Concurrent calls; more are refused.")
    busy_status: Literal[486, 503] = Field(
        default=486, description="Answer beyond max_calls: 486 Busy Here or 503 with Retry-After."
    )
    allow_from: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Networks (CIDR) allowed to send requests, comma-separated; empty allows everyone.",
    )
    inbound_auth_user: str | None = Field(
        default=None,
        description="When set (with the password), incoming INVITEs must authenticate as this user.",
    )
    inbound_auth_password: SecretStr | None = Field(
        default=None, description="Password for inbound_auth_user."
    )
    auth_max_failures: int = Field(
        default=5,
        ge=1,
        description="Inbound digest failures from one source within auth_failure_window before it is banned.",
    )
    auth_user_max_failures: int = Field(
        default=20,
        ge=1,
        description="Inbound digest failures for inbound_auth_user, any source, before the user is banned.",
    )
    auth_failure_window: float = Field(
        default=60.0, gt=0, description="The window (s) in which inbound digest failures are counted."
    )
    auth_ban_seconds: float = Field(
        default=60.0,
        gt=0,
        description="First ban (s) after too many inbound digest failures; each new ban doubles it.",
    )
    auth_max_ban_seconds: float = Field(
        default=3600.0, gt=0, description="Longest ban (s) the doubling reaches."
    )
    session_expires: int = Field(default=1800, ge=90, description="RFC 4028 session interval we ask for (s).")
    min_se: int = Field(default=90, ge=90, description="RFC 4028 smallest session interval we accept (s).")
    invite_timeout: float = Field(
        default=60.0, gt=0, description="Outbound call: give up (CANCEL) after (s)."
    )
    t1: float = Field(default=0.5, gt=0, description="RFC 3261 T1, the round-trip estimate (s).")
    tcp_idle_timeout: float = Field(
        default=300.0, gt=0, description="Close TCP connections idle this long (s)."
    )
    max_tcp_connections: int = Field(default=1024, ge=1, description="Concurrent TCP connections.")
    max_tcp_connections_per_source: int = Field(
        default=32,
        ge=1,
        description="Concurrent inbound TCP connections from one IP address; more are closed at once.",
    )
    tcp_message_timeout: float = Field(
        default=10.0,
        gt=0,
        description="A SIP message on TCP must be complete this long after its first byte (s), or the "
        "connection is closed.",
    )
    max_transactions: int = Field(
        default=50000,
        ge=100,
        description="Open SIP transactions (each lives up to 32 s after it completes); beyond it, 503.",
    )
    max_requests_per_second: int = Field(
        default=500,
        ge=1,
        description="New out-of-dialog requests (INVITE, OPTIONS) per source per second; more are dropped.",
    )
    max_packets_per_source: int = Field(
        default=2000,
        ge=1,
        description=(
            "SIP datagrams or TCP messages per second from one source, of every kind (malformed and "
            "in-dialog ones too); a source over it is banned (SIP_FLOOD_BAN_SECONDS). Raise it for a busy "
            "trunk or SBC."
        ),
    )
    flood_ban_seconds: float = Field(
        default=10.0, gt=0, description="First ban of a flooding source (s); doubled for each ban soon after."
    )
    flood_max_ban_seconds: float = Field(
        default=600.0, gt=0, description="Longest ban of a flooding source (s)."
    )
    max_new_requests_total: int = Field(
        default=2000,
        ge=1,
        description="New out-of-dialog requests per second from all sources together; more are dropped.",
    )
    max_options_per_second: int = Field(
        default=200,
        ge=1,
        description="Out-of-dialog OPTIONS per second from all sources together (scanners probe with them).",
    )
    max_unknown_dialog_answers: int = Field(
        default=100,
        ge=1,
        description=(
            "481 answers per second to requests for dialogs that do not exist (a BYE flood); beyond it, such "
            "requests are dropped unanswered."
        ),
    )
    max_pending_invites_per_source: int = Field(
        default=20,
        ge=1,
        description="Incoming calls from one source not yet answered and acknowledged; more get 486.",
    )

    tls_port: int = Field(
        default=5061,
        ge=0,
        le=65535,
        validation_alias=AliasChoices("SIP_TLS_PORT"),
        description="SIP over TLS port; the listener starts when SIP_TLS_CERT_FILE is set (0: a free port).",
    )
    tls_cert_file: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SIP_TLS_CERT_FILE"),
        description="PEM certificate chain of the TLS listener (and our client certificate for mutual TLS).",
    )
    tls_key_file: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SIP_TLS_KEY_FILE"),
        description="PEM private key of SIP_TLS_CERT_FILE (unset: the key is in the certificate file).",
    )
    tls_ca_file: str | None = Field(
        default=None,
        validation_alias=AliasChoices("SIP_TLS_CA_FILE"),
        description="PEM CA bundle peers' certificates are checked against (unset: the system's CAs).",
    )
    tls_verify_peer: bool = Field(
        default=True,
        validation_alias=AliasChoices("SIP_TLS_VERIFY_PEER"),
        description="Check the certificate and host name of servers we connect to over TLS.",
    )
    tls_require_client_cert: bool = Field(
        default=False,
        validation_alias=AliasChoices("SIP_TLS_REQUIRE_CLIENT_CERT"),
        description="Mutual TLS: incoming TLS connections must present a certificate SIP_TLS_CA_FILE trusts.",
    )
    tls_handshake_timeout: float = Field(
        default=10.0,
        gt=0,
        validation_alias=AliasChoices("SIP_TLS_HANDSHAKE_TIMEOUT"),
        description="A TLS handshake must finish this long after the connection opens (s), or it is closed.",
    )
    keepalive_interval: float = Field(
        default=90.0,
        ge=0,
        validation_alias=AliasChoices("SIP_KEEPALIVE_INTERVAL"),
        description="RFC 5626 CRLF keep-alive on the TCP/TLS connection a registration uses (s); 0: none.",
    )

    _split_lists = field_validator("transports", "allow_from", mode="before")(_csv)

    @field_validator("tls_key_file")
    @classmethod
    def _key_needs_cert(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and not info.data.get("tls_cert_file"):
            raise ValueError("SIP_TLS_KEY_FILE is set but SIP_TLS_CERT_FILE is not")
        return value

    @field_validator("tls_require_client_cert")
    @classmethod
    def _client_certs_need_ca(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not info.data.get("tls_ca_file"):
            raise ValueError(
                "SIP_TLS_REQUIRE_CLIENT_CERT needs SIP_TLS_CA_FILE (the CAs that sign client certificates)"
            )
        return value

    def agent_options(self, media: MediaSettings | None = None) -> UserAgentOptions:
        """These settings (and the media settings' SDP part) as the plain data `UserAgent` takes."""
        media = media or MediaSettings()
        password = self.auth_password.get_secret_value() if self.auth_password else None
        inbound = self.inbound_auth_password.get_secret_value() if self.inbound_auth_password else None
        return UserAgentOptions(
            local_address=self.local_address,
            port=self.port,
            via_address=self.via_address,
            transports=tuple(self.transports),
            server=self.server,
            user=self.user,
            auth_user=self.auth_user,
            auth_realm=self.auth_realm,
            auth_password=password,
            register_enabled=self.register_enabled,
            register_expires=self.register_expires,
            display_name=self.display_name,
            user_agent=self.user_agent,
            max_calls=self.max_calls,
            busy_status=self.busy_status,
            allow_from=tuple(self.allow_from),
            inbound_auth_user=self.inbound_auth_user,
            inbound_auth_password=inbound,
            auth_max_failures=self.auth_max_failures,
            auth_user_max_failures=self.auth_user_max_failures,
            auth_failure_window=self.auth_failure_window,
            auth_ban_seconds=self.auth_ban_seconds,
            auth_max_ban_seconds=self.auth_max_ban_seconds,
            session_expires=self.session_expires,
            min_se=self.min_se,
            invite_timeout=self.invite_timeout,
            t1=self.t1,
            tcp_idle_timeout=self.tcp_idle_timeout,
            max_tcp_connections=self.max_tcp_connections,
            max_tcp_connections_per_source=self.max_tcp_connections_per_source,
            tcp_message_timeout=self.tcp_message_timeout,
            max_transactions=self.max_transactions,
            max_requests_per_second=self.max_requests_per_second,
            max_packets_per_source=self.max_packets_per_source,
            flood_ban_seconds=self.flood_ban_seconds,
            flood_max_ban_seconds=max(self.flood_max_ban_seconds, self.flood_ban_seconds),
            max_new_requests_total=self.max_new_requests_total,
            max_options_per_second=self.max_options_per_second,
            max_unknown_dialog_answers=self.max_unknown_dialog_answers,
            max_pending_invites_per_source=self.max_pending_invites_per_source,
            tls_port=self.tls_port,
            tls_cert_file=self.tls_cert_file,
            tls_key_file=self.tls_key_file,
            tls_ca_file=self.tls_ca_file,
            tls_verify_peer=self.tls_verify_peer,
            tls_require_client_cert=self.tls_require_client_cert,
            tls_handshake_timeout=self.tls_handshake_timeout,
            keepalive_interval=self.keepalive_interval,
            media_address=media.address,
            media_public_address=media.public_address,
            codecs=tuple(media.codecs),
            ptime=media.ptime,
            srtp=media.srtp,
        )


class MediaSettings(SettingsGroup):
    """RTP: bind address, port range, codecs and timers."""

    model_config = SettingsConfigDict(
        env_prefix="MEDIA_", extra="ignore", populate_by_name=True, env_file=".env"
    )

    address: str = Field(
        default="127.0.0.1",
        validation_alias=AliasChoices("MEDIA_ADDRESS"),
        description="Address RTP binds to and (unless MEDIA_PUBLIC_ADDRESS) the one written into SDP.",
    )
    public_address: str | None = Field(default=None, description="Address written into SDP (NAT).")
    port: int = Field(
        default=10000,
        ge=1024,
        le=65534,
        validation_alias=AliasChoices("MEDIA_PORT"),
        description="First RTP port of the range.",
    )
    port_count: int = Field(
        default=1000,
        ge=2,
        validation_alias=AliasChoices("MEDIA_PORT_COUNT"),
        description="Number of ports in the RTP range (two per call: RTP and RTCP).",
    )
    codecs: Annotated[list[Codec], NoDecode] = Field(
        default_factory=_default_codecs,
        description="SIP codecs by preference, comma-separated (G722, PCMU, PCMA): an answer takes the first "
        "the caller offers, an offer lists them in this order.",
    )
    ptime: int = Field(default=20, description="Packet time we ask for (ms).")
    symmetric_rtp: bool = Field(
        default=True, description="Send RTP to where the caller's RTP comes from (NAT)."
    )
    inactivity_timeout: float = Field(
        default=30.0, gt=0, description="End the call after this much RTP silence (s)."
    )
    trusted_peers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Signalling peers (CIDR, comma-separated) whose SDP may name another media address that we send "
            "to at once, e.g. an SBC with separate media IPs; for any other caller, RTP goes to such an "
            "address only after RTP came from it (no media reflection)."
        ),
    )
    hold_timeout: float = Field(
        default=300.0,
        ge=0,
        description="End a call that stays on hold (no media expected) this long (s); 0 keeps held calls up.",
    )
    outbound_buffer_seconds: float = Field(
        default=30.0, gt=0, description="Agent audio buffered per call (s)."
    )
    srtp: SrtpPolicy = Field(
        default="optional",
        validation_alias=AliasChoices("MEDIA_SRTP"),
        description=(
            "SRTP with SDES keys (RFC 4568): off; optional (answer SRTP when offered, offer RTP/AVP with "
            "a=crypto, best effort); required (RTP/SAVP only: an offer without usable crypto gets 488)."
        ),
    )

    _split_codecs = field_validator("codecs", mode="before")(_codecs)

    @field_validator("trusted_peers", mode="before")
    @classmethod
    def _split_peers(cls, value: object) -> object:
        value = _csv(value)
        for net in value if isinstance(value, list) else ():
            ipaddress.ip_network(str(net), strict=False)  # ValueError names the bad entry
        return value

    def trusts(self, host: str) -> bool:
        """Whether `host` is one of MEDIA_TRUSTED_PEERS."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(net, strict=False) for net in self.trusted_peers)

    def rtp_options(self, allow_from: Sequence[str] = ()) -> RtpOptions:
        """These settings as the plain data each `RtpSession` takes (`allow_from`: SIP_ALLOW_FROM)."""
        from .rtp.session import RtpOptions  # the media engine (numpy) loads when media is set up, not here

        return RtpOptions(
            symmetric=self.symmetric_rtp,
            inactivity_timeout=self.inactivity_timeout,
            hold_timeout=self.hold_timeout or None,
            allow_from=tuple(allow_from),
            outbound_seconds=self.outbound_buffer_seconds,
        )


class GatewaySettings(SettingsGroup):
    """How calls are bridged: answering, DTMF, built-in tools, recording, shutdown."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", extra="ignore", populate_by_name=True, env_file=".env"
    )

    answer_mode: Literal["when_ready", "immediately"] = Field(
        default="when_ready",
        description="Answer once Voice Live is connected (when_ready) or at once, connecting in parallel.",
    )
    unavailable_status: Literal[480, 503] = Field(
        default=503, description="Answer to an INVITE when Voice Live cannot be reached."
    )
    dtmf_to_model: bool = Field(default=True, description="Tell the model which keys the caller pressed.")
    dtmf_interdigit_ms: int = Field(
        default=800, ge=0, description="Digits pressed within this gap are sent to the model together (ms)."
    )
    dtmf_barge_in: bool = Field(default=False, description="The # key interrupts the agent like speech does.")
    hang_up_tool: bool = Field(default=True, description="Offer the model a hang_up tool.")
    transfer_tool: bool = Field(default=False, description="Offer the model a transfer_call(target) tool.")
    transfer_allowed: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Transfer targets the model may choose, comma-separated patterns: "
        "sip:desk@pbx.example.com, sip:*@pbx.example.com (any user there), 1000 (a number at SIP_SERVER), "
        "+4930XXXX (X: one digit); empty allows none.",
    )
    warm_transfer_tool: bool = Field(
        default=False,
        description="Offer the model a warm_transfer(target, summary) tool: the caller hears hold audio, the "
        "person (a GATEWAY_TRANSFER_ALLOWED target) is rung and briefed, then the two are connected.",
    )
    hold_audio: str | None = Field(
        default=None,
        description="WAV file (mono, 16-bit PCM, any rate) the caller hears, looped, while a warm transfer "
        "rings and briefs the person; empty: a soft tone every two seconds.",
    )
    warm_transfer_ring_timeout: float = Field(
        default=30.0,
        gt=0,
        le=300,
        description="How long a warm transfer rings the person before it gives up (s).",
    )
    warm_transfer_briefing_max_s: float = Field(
        default=30.0,
        gt=0,
        le=300,
        description="Longest briefing the person hears before the caller joins (s).",
    )
    outbound_allowed: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("GATEWAY_OUTBOUND_ALLOWED", "OUTBOUND_ALLOW"),
        description="Targets Gateway.call() and the call API may dial, in the patterns of "
        "GATEWAY_TRANSFER_ALLOWED (OUTBOUND_ALLOW is another name for it); empty allows none (toll-fraud "
        "guard). The voicelive-sip call command allows the one target it is given.",
    )
    outbound_from_allowed: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=AliasChoices("GATEWAY_OUTBOUND_FROM_ALLOWED", "OUTBOUND_FROM_ALLOWED"),
        description="Callers (From) a call placed by Gateway.call() or the call API may show instead of "
        "SIP_USER, in the patterns of GATEWAY_TRANSFER_ALLOWED (a bare user: at SIP_SERVER's host); empty "
        "allows none (caller-ID spoofing guard). A display name of its own is always allowed.",
    )
    send_dtmf_tool: bool = Field(
        default=False,
        description="Offer the model a send_dtmf(digits) tool to press keys in a remote IVR (RFC 4733 "
        "telephone-events, or SIP INFO when the peer negotiated none).",
    )
    send_dtmf_allowed: str = Field(
        default="0123456789*#", min_length=1, description="The keys send_dtmf may press (of 0-9 * # A-D)."
    )
    send_dtmf_max_digits: int = Field(
        default=20, ge=1, le=64, description="Most keys one send_dtmf call may press."
    )
    tool_timeout: float = Field(default=10.0, gt=0, description="Seconds a tool call may run.")
    recording_dir: str | None = Field(
        default=None, description="Directory for a stereo WAV per call (left caller, right agent)."
    )
    goodbye_timeout: float = Field(
        default=10.0, gt=0, description="After hang_up, longest wait for the goodbye to finish playing (s)."
    )
    voicelive_failures_unhealthy: int = Field(
        default=3,
        ge=0,
        description=(
            "Voice Live connection attempts in a row that must fail before the gateway reports itself "
            "unavailable (OPTIONS and new INVITEs get 503 with Retry-After, /readyz 503) and probes until "
            "the service is back; 0 never reports it."
        ),
    )
    health_probe_interval: float = Field(
        default=10.0,
        gt=0,
        description="While Voice Live is marked unreachable, try a connection this often (s).",
    )
    drain_timeout: float = Field(
        default=30.0, ge=0, description="On SIGTERM, how long calls in progress may continue (s)."
    )
    profiles_file: str | None = Field(
        default=None,
        description="Agent profiles and call routing (TOML): read at start-up and again on SIGHUP.",
    )

    _split_lists = field_validator(
        "transfer_allowed", "outbound_allowed", "outbound_from_allowed", mode="before"
    )(_csv)

    @field_validator("send_dtmf_allowed")
    @classmethod
    def _dtmf_keys(cls, value: str) -> str:
        value = value.strip().upper()
        wrong = sorted(set(value) - set(DTMF_KEYS))
        if wrong:
            raise ValueError(f"not DTMF keys: {''.join(wrong)} (allowed: {DTMF_KEYS})")
        return value

    @field_validator("transfer_allowed", "outbound_allowed", "outbound_from_allowed")
    @classmethod
    def _transfer_patterns(cls, value: list[str]) -> list[str]:
        # A pattern that does not parse stops start-up instead of silently allowing nothing (or anything).
        for text in value:
            TargetPattern.parse(text)
        return value


class OutboundSettings(SettingsGroup):
    """The HTTP call API (POST /calls) and its toll-fraud limits (allow-list: GATEWAY_OUTBOUND_ALLOWED)."""

    model_config = SettingsConfigDict(
        env_prefix="OUTBOUND_", extra="ignore", populate_by_name=True, env_file=".env"
    )

    api_enabled: bool = Field(
        default=False,
        description="Serve the call API (POST, GET, DELETE /calls and /openapi.json) on the HTTP server "
        "(METRICS_HOST:METRICS_PORT).",
    )
    auth_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("HTTP_AUTH_TOKEN"),
        description="Bearer token the call API requires (Authorization: Bearer <token>); without it the API "
        "starts only on a loopback METRICS_HOST.",
    )
    max_concurrent: int = Field(
        default=10, ge=1, description="Calls placed through the API at once (ringing or up); 429 above."
    )
    max_attempts_per_second: int = Field(
        default=2, ge=1, description="Call attempts the API starts in any one second; 429 above."
    )
    ring_timeout: float = Field(
        default=30.0,
        gt=0,
        le=300,
        description="How long an API call rings before it is cancelled (s), unless the request says.",
    )


def _web_addresses(value: list[str]) -> list[str]:
    for url in value:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
    return value


class AmdSettings(SettingsGroup):
    """Answering-machine detection on outbound calls (app_amd's parameters, in ms) and voicemail drop."""

    model_config = SettingsConfigDict(
        env_prefix="AMD_", extra="ignore", populate_by_name=True, env_file=".env"
    )

    enabled: bool = Field(
        default=False,
        description="Listen to the first seconds of every answered outbound call for a person or a machine "
        "(an API call may turn it on or off with its amd field).",
    )
    initial_silence: int = Field(
        default=2500,
        ge=100,
        le=60_000,
        description="Silence before any speech longer than this: MACHINE (ms).",
    )
    greeting: int = Field(
        default=1500, ge=100, le=60_000, description="Speech in the greeting longer than this: MACHINE (ms)."
    )
    after_greeting_silence: int = Field(
        default=800, ge=20, le=60_000, description="Silence after a short greeting this long: HUMAN (ms)."
    )
    total_analysis_time: int = Field(
        default=5000, ge=500, le=60_000, description="No decision by then: NOTSURE, treated as a person (ms)."
    )
    min_word_length: int = Field(default=100, ge=20, le=5000, description="Speech this long is a word (ms).")
    between_words_silence: int = Field(
        default=50, ge=20, le=5000, description="Silence this long ends a word (ms)."
    )
    maximum_number_of_words: int = Field(
        default=2, ge=1, le=100, description="More words than this in the greeting: MACHINE."
    )
    maximum_word_length: int = Field(
        default=5000, ge=100, le=60_000, description="One word longer than this: MACHINE (ms)."
    )
    silence_threshold: int = Field(
        default=256,
        ge=1,
        le=32767,
        description="Mean absolute sample value (16-bit) below which a 20 ms frame is silence.",
    )
    beep_min_length: int = Field(
        default=120, ge=40, le=5000, description="A steady tone in 400-2000 Hz this long is a beep (ms)."
    )
    greeting_end_silence: int = Field(
        default=1500,
        ge=100,
        le=60_000,
        description="After a MACHINE verdict without a beep, the greeting is over after this silence (ms).",
    )
    max_greeting_wait: int = Field(
        default=30_000,
        ge=1000,
        le=300_000,
        description="Leave the voicemail message by this time after the answer, beep or not (ms).",
    )
    machine_action: Literal["hangup", "voicemail"] = Field(
        default="hangup",
        description="A machine answered: hang up at once, or wait for the beep and leave the voicemail "
        "message (AMD_VOICEMAIL_MESSAGE or the call's own), then hang up.",
    )
    voicemail_message: str = Field(
        default="",
        max_length=2000,
        description="What the agent says on an answering machine, word for word (empty: hang up instead, "
        "unless AMD_VOICEMAIL_INSTRUCTIONS or the call gives one).",
    )
    voicemail_instructions: str = Field(
        default="",
        max_length=16_000,
        description="Instructions for the message the agent composes for an answering machine (used when "
        "there is no AMD_VOICEMAIL_MESSAGE).",
    )
    hold_agent_audio: bool = Field(
        default=True,
        description="Keep the agent silent (no greeting, no caller audio to the model) until AMD decides; "
        "false lets the conversation start at once and stops it if a machine answered.",
    )


class WebhookSettings(SettingsGroup):
    """Lifecycle webhooks: signed JSON POSTs about every call, retried with back-off, never delaying it."""

    model_config = SettingsConfigDict(
        env_prefix="WEBHOOK_", extra="ignore", populate_by_name=True, env_file=".env"
    )

    urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Receivers of every call's events (call.started, call.answered, call.tool_called, "
        "call.ended), comma-separated http(s) URLs; an API call may name its own instead.",
    )
    secret: SecretStr | None = Field(
        default=None,
        description="Key of the HMAC-SHA256 signature in X-VoiceLive-Signature; required for webhooks.",
    )
    max_attempts: int = Field(
        default=6, ge=1, le=20, description="Deliveries tried per event before it is given up."
    )
    initial_delay: float = Field(
        default=1.0, gt=0, description="Wait before the first retry (s); each further retry doubles it."
    )
    max_delay: float = Field(default=60.0, gt=0, description="Longest wait between two retries (s).")
    timeout: float = Field(default=5.0, gt=0, description="How long one delivery may take (s).")
    queue_size: int = Field(
        default=1000, ge=1, description="Events waiting per receiver; when full, new events are dropped."
    )

    _split_lists = field_validator("urls", mode="before")(_csv)
    _check_urls = field_validator("urls")(_web_addresses)


class MetricsSettings(SettingsGroup):
    """The gateway's one HTTP server: `METRICS_ENABLED`, `METRICS_HOST`, `METRICS_PORT`, `HTTP_AUTH_TOKEN`."""

    model_config = SettingsConfigDict(
        env_prefix="METRICS_", extra="ignore", populate_by_name=True, env_file=".env"
    )

    enabled: bool = Field(default=True, description="Serve /metrics, /healthz and /readyz.")
    host: str = Field(
        default="127.0.0.1",
        description="Address to listen on; 0.0.0.0 exposes the endpoint beyond this host.",
    )
    # Not 9100: that is node_exporter's, usually running on the same host (the whole 9100-9999 exporter range
    # is allocated).
    port: int = Field(default=8160, ge=0, le=65535, description="TCP port (0: any free port).")
    auth_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("HTTP_AUTH_TOKEN"),
        description="Bearer token every HTTP API of the gateway requires (the call API, /whip; the /phone "
        "page asks for it); required when METRICS_HOST is not a loopback address and an API is on.",
    )


def _ice_server(url: str) -> str:
    parts = urlsplit(url)
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("stun", "stuns", "turn", "turns") or not (parts.path or parts.netloc):
        raise ValueError(f"not a STUN or TURN URL: {url!r} (e.g. stun:stun.example.com:3478)")
    return url


class WebRtcSettings(SettingsGroup):
    """Browser calls over WebRTC (WHIP at /whip, the page at /phone) on the HTTP server (METRICS_PORT)."""

    model_config = SettingsConfigDict(
        env_prefix="WEBRTC_", extra="ignore", populate_by_name=True, env_file=".env"
    )

    enabled: bool | None = Field(
        default=None,
        description="Take browser calls at /whip and serve /phone. Unset: on when the gateway runs with the "
        "bundled fake Voice Live (the demo, serve with the fake), off otherwise.",
    )
    ice_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="STUN/TURN URLs offered to ICE, comma-separated (none by default: host candidates only, "
        "which works on a LAN or with WEBRTC_ICE_ADDRESSES on a public address).",
    )
    ice_username: str | None = Field(default=None, description="TURN username (for the turn: URLs).")
    ice_credential: SecretStr | None = Field(default=None, description="TURN password (for the turn: URLs).")
    ice_addresses: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Local IP addresses to gather ICE host candidates on, comma-separated (default: every "
        "interface but loopback); 127.0.0.1 keeps a browser on this host on loopback.",
    )
    ice_public_address: str | None = Field(
        default=None,
        description="The public address of a 1:1 NAT in front of this host: host candidates are announced "
        "with it instead of the local address (as Janus's nat_1_1_mapping).",
    )
    ice_timeout: float = Field(
        default=15.0,
        gt=0,
        le=120,
        description="Seconds for ICE and DTLS to connect before the call is freed.",
    )
    max_pending: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="Browser calls connecting (offer answered, ICE not done) at once.",
    )
    max_offer_bytes: int = Field(
        default=16384, ge=1024, le=262144, description="Largest SDP offer accepted (bytes); 413 above."
    )
    max_call_duration: float = Field(
        default=3600.0, gt=0, description="A browser call is ended after this many seconds."
    )
    media_timeout: float = Field(
        default=10.0, gt=0, description="A browser call with no audio from the browser for this long ends."
    )

    _split_lists = field_validator("ice_servers", "ice_addresses", mode="before")(_csv)

    @field_validator("ice_servers")
    @classmethod
    def _ice_urls(cls, value: list[str]) -> list[str]:
        return [_ice_server(url) for url in value]

    @field_validator("ice_addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            ipaddress.ip_address(address)  # ValueError names the bad entry
        return value

    @field_validator("ice_public_address")
    @classmethod
    def _public(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)
        return value


class Settings(BaseSettings):
    """Everything, grouped by concern; each group reads its own environment variables."""

    model_config = SettingsConfigDict(extra="ignore")

    sip: SipSettings = Field(default_factory=SipSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    voicelive: VoiceLiveSettings = Field(default_factory=VoiceLiveSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    amd: AmdSettings = Field(default_factory=AmdSettings)
    webrtc: WebRtcSettings = Field(default_factory=WebRtcSettings)

    @classmethod
    def group_models(cls) -> dict[str, type[BaseSettings]]:
        """The settings groups, by field name."""
        return {
            name: field.annotation
            for name, field in cls.model_fields.items()
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings)
        }


class ConfigError(VoiceLiveSipError):
    """Invalid configuration: one line per problem, naming the environment variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class StartupError(ConfigError):
    """The gateway could not start for a reason a setting fixes (a port in use, a folder it cannot write):
    one line per problem, naming the environment variable."""


# Where DefaultAzureCredential finds a Microsoft Entra ID identity without an API key.
_ENTRA_VARIABLES = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "IDENTITY_ENDPOINT",
    "MSI_ENDPOINT",
    "AZURE_USERNAME",
)


def voicelive_problems(settings: VoiceLiveSettings, *, credential: object = None) -> list[str]:
    """Why calls could not reach Voice Live with these settings (no endpoint, no credential); [] if they can.

    `credential`: one the application passes (an azure-identity credential); it counts as a credential.
    """
    problems = []
    if not settings.endpoint:
        problems.append(
            "AZURE_VOICELIVE_ENDPOINT: not set (e.g. https://<resource>.cognitiveservices.azure.com); "
            "or try without Azure: voicelive-sip serve --fake-voicelive"
        )
    entra = entra_available()
    if settings.is_agent:
        problems += agent_problems(settings, credential=credential, entra=entra)
    elif settings.api_key is None and credential is None and not entra:
        problems.append(
            "AZURE_VOICELIVE_API_KEY: not set, and no Microsoft Entra ID found (AZURE_CLIENT_ID/"
            "AZURE_TENANT_ID, a managed identity, or `az login`); set one, or use --fake-voicelive"
        )
    return problems


def entra_available() -> bool:
    """Whether DefaultAzureCredential has somewhere to find a Microsoft Entra ID identity."""
    return any(os.environ.get(name) for name in _ENTRA_VARIABLES) or (Path.home() / ".azure").is_dir()


def agent_problems(
    settings: VoiceLiveSettings, *, credential: object = None, entra: bool | None = None, where: str = ""
) -> list[str]:
    """Why a Foundry agent session could not open: no project, or no Entra ID (the service refuses keys).

    `where` prefixes each problem (a profile's name); `credential`: one the application passes.
    """
    if not settings.is_agent:
        return []
    problems = []
    if not settings.agent_project:
        problems.append(
            f"{where}VOICE_LIVE_AGENT_PROJECT: required with VOICE_LIVE_AGENT_NAME (the agent's project)"
        )
    entra = entra_available() if entra is None else entra
    token = credential is not None and callable(getattr(credential, "get_token", None))
    if not token and not (credential is None and entra):
        problems.append(
            f"{where}VOICE_LIVE_AGENT_NAME: a Foundry agent session needs Microsoft Entra ID, and "
            + (
                "the credential given is not a token credential"
                if credential is not None
                else "none was found (AZURE_CLIENT_ID/AZURE_TENANT_ID, a managed identity, or `az login`)"
            )
            + (": AZURE_VOICELIVE_API_KEY is not accepted for agents" if settings.api_key is not None else "")
        )
    return problems


def _is_secret(model: type[BaseSettings], key: str) -> bool:
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        names = (
            {name, *(c for c in alias.choices if isinstance(c, str))}
            if isinstance(alias, AliasChoices)
            else {name}
        )
        if key in names or env_name(model, name) == key:
            return "Secret" in str(field.annotation)
    return False


def load_settings(**groups: BaseSettings) -> Settings:
    """Read every group from the environment (and .env); raise `ConfigError` listing all that is wrong."""
    problems: list[str] = []
    loaded: dict[str, BaseSettings] = dict(groups)
    for name, model in Settings.group_models().items():
        if name in loaded:
            continue
        try:
            loaded[name] = model()
        except ValidationError as error:
            for item in error.errors():
                key = str(item["loc"][0]) if item["loc"] else name
                shown = "" if _is_secret(model, key) else f" (got {item.get('input')!r})"
                problems.append(f"{env_name(model, key)}: {item['msg']}{shown}")
    if problems:
        raise ConfigError(problems)
    return Settings.model_validate(loaded)
