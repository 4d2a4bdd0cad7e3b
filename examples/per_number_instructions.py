"""A custom handler: instructions and voice chosen by the number the caller dialled.

One gateway serves several lines: +1 555 0100 is sales (English), +49 30 1234 is the German support line.

    python examples/per_number_instructions.py --fake-voicelive
"""

from __future__ import annotations

import argparse
import asyncio

from voicelive_sip import Gateway, Settings
from voicelive_sip.aio import IncomingCall
from voicelive_sip.config import VoiceLiveSettings, load_settings
from voicelive_sip.sip.uri import SipUri

LINES: dict[str, dict[str, object]] = {
    "+15550100": {
        "instructions": "You are the sales assistant. Help callers choose a plan.",
        "voice": "alloy",
    },
    "+49301234": {
        "instructions": "Du bist der Support-Assistent. Antworte auf Deutsch und fasse dich kurz.",
        "voice": "de-DE-KatjaNeural",
        "voice_type": "azure-standard",
        "transcription_language": "de-DE",
    },
}


def dialled(call: IncomingCall) -> str:
    """The number the caller dialled: the user part of the Request-URI, else of To."""
    for uri in (call.request.uri, call.request.to.uri):
        if isinstance(uri, SipUri) and uri.user:
            return uri.user
    return ""


def per_number(base: VoiceLiveSettings) -> object:
    def configure(call: IncomingCall) -> VoiceLiveSettings | None:
        line = LINES.get(dialled(call))
        return None if line is None else base.model_copy(update=line)

    return configure


def gateway(settings: Settings) -> Gateway:
    return Gateway(settings, configure=per_number(settings.voicelive))  # type: ignore[arg-type]


async def main(fake: bool) -> None:
    settings = load_settings()
    if fake:
        from voicelive_sip.testing import FakeVoiceLive

        async with FakeVoiceLive(pace=1.0) as fake_service:
            settings.voicelive = fake_service.settings(proactive_greeting_enabled=True)
            await gateway(settings).serve()
    else:
        await gateway(settings).serve()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake-voicelive", action="store_true")
    asyncio.run(main(parser.parse_args().fake_voicelive))
