"""Agent profiles: the TOML file, its errors (naming the line), routing, what each profile resolves to."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from voicelive_sip import tool
from voicelive_sip.config import GatewaySettings, Settings, VoiceLiveSettings
from voicelive_sip.profiles import AgentProfile, CallFacts, ProfileError, Profiles, Route, load_profiles


@tool
async def order_status(order_id: str) -> dict[str, str]:
    """Look up an order."""
    return {"order_id": order_id, "status": "shipped"}


@tool
async def open_ticket(summary: str) -> dict[str, str]:
    """Open a support ticket."""
    return {"ticket": "T-1", "summary": summary}


TOOLS = {t.name: t for t in (order_status, open_ticket)}

GOOD = """\
default = "sales"

[profiles.sales]
model = "gpt-4o-mini"
instructions = "You sell things."
voice = "alloy"
greeting = "Sales, how can I help?"
language = "en-US"
tools = ["order_status"]
transfer = ["sip:*@pbx.example.com"]

[profiles.sales.voicelive]
vad_silence_duration_ms = 700

[profiles.support]
agent = "support-agent"
project = "contoso"
agent_version = "3"
tools = ["open_ticket"]
recording = false

[[routes]]
called = "+1555010?"
profile = "sales"

[[routes]]
header = "X-Agent"
value = "support"
profile = "support"

[[routes]]
source = "10.1.0.0/16"
from = "alice*"
profile = "support"

[[routes]]
uri_user = "help"
profile = "support"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profiles.toml"
    path.write_text(textwrap.dedent(text))
    return path


def load_profiles_text(text: str) -> Profiles:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return load_profiles(_write(Path(folder), text))


def _facts(**values: object) -> CallFacts:
    base: dict[str, object] = {"called": "agent", "uri_user": "agent", "caller": "bob", "source": "127.0.0.1"}
    return CallFacts(**{**base, **values})  # type: ignore[arg-type]


def _base() -> Settings:
    return Settings(
        voicelive=VoiceLiveSettings(
            endpoint="https://r.cognitiveservices.azure.com", api_key="k", model="gpt-4o"
        ),
        gateway=GatewaySettings(recording_dir="/tmp/recordings"),
    )


def test_a_file_routes_by_number_header_source_and_from_and_falls_back_to_the_default(tmp_path: Path) -> None:
    profiles = load_profiles(_write(tmp_path, GOOD))
    assert profiles.route(_facts(called="+15550101"))[0] == "sales"
    assert profiles.route(_facts(headers={"x-agent": ("Support",)}))[0] == "support"  # values: no case
    assert profiles.route(_facts(source="10.1.2.3", caller="alice.smith"))[0] == "support"
    assert profiles.route(_facts(source="10.1.2.3", caller="bob"))[0] == "sales"  # every condition must hold
    assert profiles.route(_facts(uri_user="help"))[0] == "support"
    name, rule = profiles.route(_facts(called="+15550199"))
    assert (name, rule) == ("sales", None)  # the default
    assert profiles.header_names == ("X-Agent",)
    assert profiles.table() == [
        "1. called=+1555010? -> sales",
        "2. X-Agent: support -> support",
        "3. from=alice* and source=10.1.0.0/16 -> support",
        "4. uri_user=help -> support",
        "*. otherwise -> sales",
    ]


def test_each_profile_resolves_to_its_own_settings_and_only_its_own_tools(tmp_path: Path) -> None:
    resolved = load_profiles(_write(tmp_path, GOOD)).resolve(_base(), TOOLS)
    sales, support = resolved["sales"], resolved["support"]
    assert [t.name for t in sales.tools] == ["order_status"]
    assert [t.name for t in support.tools] == ["open_ticket"]
    v = sales.settings.voicelive
    assert (v.model, v.voice, v.proactive_greeting, v.transcription_language) == (
        "gpt-4o-mini", "alloy", "Sales, how can I help?", "en-US",
    )  # fmt: skip
    assert v.vad_silence_duration_ms == 700 and not v.is_agent
    assert sales.settings.gateway.transfer_tool and sales.settings.gateway.transfer_allowed == [
        "sip:*@pbx.example.com"
    ]
    assert sales.settings.gateway.recording_dir == "/tmp/recordings"
    a = support.settings.voicelive
    assert (a.agent_name, a.agent_project, a.agent_version, a.is_agent) == (
        "support-agent",
        "contoso",
        "3",
        True,
    )
    assert support.settings.gateway.recording_dir is None  # recording = false
    assert support.settings.voicelive.api_key is not None  # the environment's, untouched (not used by agents)


def test_a_model_profile_leaves_an_agent_of_the_environment_behind() -> None:
    base = _base()
    base.voicelive = VoiceLiveSettings.model_validate(
        {**base.voicelive.model_dump(), "agent_name": "env-agent", "agent_project": "p"}
    )
    profiles = Profiles([AgentProfile("m", voicelive={"model": "gpt-4o-mini"})], default="m")
    v = profiles.resolve(base)["m"].settings.voicelive
    assert not v.is_agent and v.model == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('[profiles.a]\nmodel = "x"\nvoice = \n', 3, "Invalid value"),  # TOML syntax: tomllib's line
        ('[profiles.a]\nmodel = "x"\ncolour = "red"\n', 3, "unknown key 'colour'"),
        ('[profiles.a]\nmodel = "x"\n\n[[routes]]\ncalled = "1"\nprofile = "b"\n', 6, "unknown profile 'b'"),
        ('[profiles.a]\nmodel = "x"\n\n[[routes]]\nprofile = "a"\nsource = "10.0.0.300"\n', 6, "10.0.0.300"),
        ('default = "zzz"\n[profiles.a]\nmodel = "x"\n', 1, "unknown profile 'zzz'"),
        ('[profiles.a]\nmodel = "x"\n\n[[routes]]\nprofile = "a"\n', 4, "needs a condition"),
        ('[profiles.a]\nmodel = "x"\nagent = "y"\nproject = "p"\n', 3, "either model or agent"),
    ],
)
def test_a_bad_file_names_the_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profiles(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:{line}:") and message in problem


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('[profiles.a]\nmodel = "x"\ntools = ["order_status", "nope"]\n', 3, "tool 'nope'"),
        ('[profiles.a]\nmodel = "x"\ntools = ["no_such_module:tools"]\n', 3, "cannot import"),
        ('[profiles.a]\nmodel = "x"\n\n[profiles.a.voicelive]\nvad_threshold = 7\n', 5, "vad_threshold"),
        ('[profiles.a]\nmodel = "x"\n\n[profiles.a.voicelive]\napi_key = "secret"\n', 5, "api_key cannot"),
        ('[profiles.a]\nagent = "y"\n', 2, "needs its project"),
        ('[profiles.a]\nmodel = "x"\ntransfer = ["sip:"]\n', 3, "transfer target"),
    ],
)
def test_a_profile_that_cannot_work_with_this_gateway_names_the_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ProfileError) as info:
        load_profiles(path).resolve(_base(), TOOLS)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:{line}:") and message in problem


def test_tools_by_import_path_and_python_profiles() -> None:
    profiles = Profiles(
        [
            AgentProfile("a", tools=["tests.test_profiles:order_status"]),
            AgentProfile("b", tools=[open_ticket]),
        ],
        [Route("b", header="X-Agent", value="b")],
        default="a",
    )
    resolved = profiles.resolve(_base(), {})
    assert [t.name for t in resolved["a"].tools] == ["order_status"]
    assert [t.name for t in resolved["b"].tools] == ["open_ticket"]
    with pytest.raises(ProfileError, match="unknown profile 'c'"):
        Profiles([AgentProfile("a")], [Route("c", called="1")])


def test_the_facts_of_a_real_invite() -> None:
    from types import SimpleNamespace

    from voicelive_sip.sip import parse_message

    invite = (
        b"INVITE sip:help@gw.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK1\r\n"
        b"From: <sip:alice@pbx.example.com>;tag=1\r\n"
        b"To: <tel:+15550100>\r\n"
        b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        b"X-Agent: Support\r\nContent-Length: 0\r\n\r\n"
    )
    call = SimpleNamespace(request=parse_message(invite), source=("10.1.2.3", 5060))
    facts = CallFacts.of(call, ["x-agent"])  # type: ignore[arg-type]
    assert facts == CallFacts("+15550100", "help", "alice", "10.1.2.3", {"x-agent": ("Support",)})
    profiles = load_profiles_text(GOOD)
    assert profiles.route(facts)[0] == "sales"  # the called number rule comes first
