"""A gateway with a business tool: callers ask where their order is, the agent looks it up.

    python examples/order_status_gateway.py                   # Azure: AZURE_VOICELIVE_ENDPOINT, key/Entra ID
    python examples/order_status_gateway.py --fake-voicelive  # no account: the fake, scripted to use the tool

Then call sip:agent@127.0.0.1:5060 from a softphone (or point your PBX at it).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Literal

from voicelive_sip import CallInfo, Gateway, Settings, tool
from voicelive_sip.config import load_settings

ORDERS = {"1001": "shipped", "1002": "being packed", "1003": "delivered"}

INSTRUCTIONS = (
    "You are the phone assistant of a small online shop. When a caller asks about an order, ask for the "
    "order number and use the order_status tool. Keep answers short: this is a phone call."
)


@tool
async def order_status(order_id: str, call: CallInfo | None = None) -> dict[str, str]:
    """Look up the status of an order.

    order_id: the order number the caller reads out, digits only
    """
    status = ORDERS.get(order_id.strip(), "unknown")
    return {"order_id": order_id, "status": status}


@tool
def opening_hours(day: Literal["weekday", "saturday", "sunday"] = "weekday") -> str:
    """Opening hours of the shop's help desk on a kind of day."""
    return {"weekday": "9:00 to 18:00", "saturday": "10:00 to 14:00", "sunday": "closed"}[day]


def gateway(settings: Settings) -> Gateway:
    settings.voicelive.instructions = INSTRUCTIONS
    return Gateway(settings, tools=[order_status, opening_hours])


async def main(fake: bool) -> None:
    settings = load_settings()
    if fake:
        from voicelive_sip.testing import FakeReply, FakeToolCall, FakeVoiceLive

        script = FakeReply(
            tool_call=FakeToolCall("order_status", '{"order_id": "1001"}'),
            follow_up=FakeReply(text="Your order 1001 is {output}."),
        )
        async with FakeVoiceLive(replies=[script], pace=1.0) as fake_service:
            settings.voicelive = fake_service.settings(
                instructions=INSTRUCTIONS, proactive_greeting_enabled=True
            )
            await gateway(settings).serve()
    else:
        await gateway(settings).serve()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake-voicelive", action="store_true")
    asyncio.run(main(parser.parse_args().fake_voicelive))
