"""The reference gateway's settings, as its users write them, against kamailio: a bare SIP_USER with a
host:port SIP_SERVER, the realm and the password register (kamailio checks `$au == $tU`), and a call to that
user through kamailio reaches the gateway and is bridged."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.interop.conftest import Kamailio, Sipp, scenario
from voicelive_sip import Gateway, TranscriptLine
from voicelive_sip.aio import RegistrationState
from voicelive_sip.config import load_settings
from voicelive_sip.settings_group import env_name
from voicelive_sip.testing import FakeVoiceLive

pytestmark = pytest.mark.interop

# DISPLAY_NAME is left empty (as the reference allows): sipp's uac scenario builds its ACK and BYE from
# [next_url], the whole Contact value, so a display name there would end up in sipp's request line.
REFERENCE_ENV = """\
SIP_SERVER={server}
SIP_PORT=0
SIP_USER=alice
AUTH_USER=alice
AUTH_REALM=test.local
AUTH_PASSWORD=alice123
REGISTER_WITH_SIP_SERVER=true
DISPLAY_NAME=
SIP_LOCAL_ADDRESS=127.0.0.1
SIP_VIA_ADDR=
MEDIA_ADDRESS=127.0.0.1
MEDIA_PORT=44600
MEDIA_PORT_COUNT=20
AZURE_VOICELIVE_ENDPOINT={endpoint}
AZURE_VOICELIVE_API_KEY={key}
VOICE_LIVE_PROACTIVE_GREETING_ENABLED=true
VOICE_LIVE_PROACTIVE_GREETING=Thank you for calling.
LOG_LEVEL=INFO
VOICE_LIVE_LOG_FILE=
"""


async def test_a_reference_env_registers_at_kamailio_and_takes_a_call_through_it(
    kamailio: Kamailio, sipp: Sipp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voicelive_sip.config import Settings

    for group in Settings.group_models().values():
        for name in group.model_fields:
            monkeypatch.delenv(env_name(group, name), raising=False)
    async with FakeVoiceLive(pace=1.0) as fake:
        (tmp_path / ".env").write_text(
            REFERENCE_ENV.format(server=kamailio.address, endpoint=fake.endpoint, key=fake.api_key)
        )
        monkeypatch.chdir(tmp_path)
        settings = load_settings()
        async with Gateway(settings) as gateway:
            (registration,) = gateway.ua.registrations
            await registration.wait_registered(timeout=10)
            assert registration.state is RegistrationState.REGISTERED
            assert str(registration.aor) == f"sip:alice@{kamailio.address.split(':')[0]}"
            contacts = kamailio.contacts().get("alice", [])
            assert any(f":{gateway.ua.address[1]}" in c for c in contacts), kamailio.kamcmd("ul.dump")

            # sipp dials alice at kamailio, which finds our contact and relays the INVITE to the gateway.
            result = await sipp.run(
                scenario("uac_proxy_auth.xml"), kamailio.address, args=["-s", "alice", "-d", "1500"]
            )
            assert result.returncode == 0, result.describe()
            session = await gateway.next_call(timeout=10)
            assert session.call.request.record_route, "the INVITE did not come through kamailio"
            summary = await session.wait_ended(timeout=10)
    assert (summary.end_reason, summary.ended_by) == ("bye", "remote")
    assert any(isinstance(line, TranscriptLine) and line.role == "agent" for line in summary.transcript)
