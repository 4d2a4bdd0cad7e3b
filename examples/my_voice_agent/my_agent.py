"""My voice agent: one tool, served by `voicelive-sip serve --app my_agent:tools`."""

from voicelive_sip import tool


@tool
async def order_status(order_id: str) -> dict[str, str]:
    """Look up the status of an order."""
    return {"order_id": order_id, "status": "shipped"}


tools = [order_status]
