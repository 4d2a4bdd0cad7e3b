"""The call API: POST /calls dials a SipPhone, GET follows the call, DELETE ends it; refusals are JSON."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jsonschema
import pytest
from openapi_spec_validator import validate

from voicelive_sip import Gateway
from voicelive_sip.aio import CallFailed, IncomingCall
from voicelive_sip.call_api import MAX_BODY_BYTES, CallApi, openapi
from voicelive_sip.config import GatewaySettings, OutboundSettings, StartupError
from voicelive_sip.dialer import Dialer
from voicelive_sip.http import ObservabilityServer
from voicelive_sip.testing import FakeVoiceLive, SipPhone

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FrozenClock:
    """The dialer's rate window reads this: the test moves time, nothing sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def gateway_settings(fake_voicelive: FakeVoiceLive) -> dict[str, Any]:
    return {
        "voicelive": fake_voicelive.settings(proactive_greeting_enabled=True),
        "gateway": GatewaySettings(
            outbound_allowed=["sip:*@127.0.0.1"], outbound_from_allowed=["support", "sip:+15550199@127.0.0.1"]
        ),
        "outbound": OutboundSettings(max_concurrent=2, max_attempts_per_second=2),
    }


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def api(gateway: Gateway, clock: FrozenClock) -> AsyncIterator[ObservabilityServer]:
    dialer = Dialer(gateway, clock=clock)
    server = ObservabilityServer(
        gateway.metrics, ready=gateway.readiness, host="127.0.0.1", port=0, calls=CallApi(dialer, token=TOKEN)
    )
    await server.start()
    yield server
    await dialer.close()
    await server.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    assert response.content_type == "application/json"
    data = await response.json()
    assert isinstance(data, dict)
    return data


async def _state(client: aiohttp.ClientSession, api: ObservabilityServer, call_id: str) -> dict[str, Any]:
    async with client.get(f"{api.url}/calls/{call_id}", headers=AUTH) as response:
        assert response.status == 200
        return await _json(response)


async def _until_state(
    client: aiohttp.ClientSession, api: ObservabilityServer, call_id: str, state: str
) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while (call := await _state(client, api, call_id))["state"] != state:
            await asyncio.sleep(0.05)
    return call


async def _ringing(phone: SipPhone) -> IncomingCall:
    """The next call to `phone`, ringing (180) and left unanswered."""
    calls = phone.ua.incoming_calls()
    try:
        async with asyncio.timeout(10):
            incoming = await anext(calls)
    finally:
        await calls.aclose()
    await incoming.ring()
    return incoming


async def test_a_call_is_placed_followed_and_hung_up(
    api: ObservabilityServer, client: aiohttp.ClientSession, sip_phone: SipPhone
) -> None:
    body = {"to": sip_phone.uri, "metadata": {"customer": 42}, "instructions": "Remind Dana of the visit."}
    async with client.post(f"{api.url}/calls", json=body, headers=AUTH) as response:
        assert response.status == 202
        created = await _json(response)
        assert response.headers["Location"] == f"/calls/{created['id']}"
    assert created["state"] == "dialing"
    phone_call = await sip_phone.answer_next()
    call = await _until_state(client, api, created["id"], "answered")
    assert call["metadata"] == {"customer": 42} and call["answered_at"] and call["sip_call_id"]
    async with client.get(f"{api.url}/calls", headers=AUTH) as response:
        listed = (await _json(response))["calls"]
    assert [c["id"] for c in listed] == [created["id"]] and "summary" not in listed[0]

    async with client.delete(f"{api.url}/calls/{created['id']}", headers=AUTH) as response:
        assert response.status == 202
    ended = await phone_call.wait_ended()
    assert ended.by == "remote"  # the gateway sent the BYE
    call = await _until_state(client, api, created["id"], "ended")
    assert call["summary"]["direction"] == "outbound" and call["summary"]["callee"] == sip_phone.uri
    jsonschema.validate(call, openapi()["components"]["schemas"]["Call"])
    async with client.delete(f"{api.url}/calls/{created['id']}", headers=AUTH) as response:
        assert response.status == 409 and (await _json(response))["error"] == "call_ended"


async def test_a_ringing_call_is_cancelled(
    api: ObservabilityServer, client: aiohttp.ClientSession, sip_phone: SipPhone
) -> None:
    async with client.post(f"{api.url}/calls", json={"to": sip_phone.uri}, headers=AUTH) as response:
        created = await _json(response)
    incoming = await _ringing(sip_phone)
    async with client.delete(f"{api.url}/calls/{created['id']}", headers=AUTH) as response:
        assert response.status == 202
    ended = await incoming.wait_ended()
    assert ended.reason == "cancelled"  # CANCEL reached the callee
    call = await _until_state(client, api, created["id"], "ended")
    assert call["end_reason"] == "cancelled" and call["summary"] is None


async def test_an_unanswered_call_gives_up_after_its_ring_timeout(
    api: ObservabilityServer, client: aiohttp.ClientSession, sip_phone: SipPhone
) -> None:
    body = {"to": sip_phone.uri, "ring_timeout": 0.5}
    async with client.post(f"{api.url}/calls", json=body, headers=AUTH) as response:
        created = await _json(response)
    incoming = await _ringing(sip_phone)
    await incoming.wait_ended()
    call = await _until_state(client, api, created["id"], "ended")
    assert call["end_reason"] == "no-answer"


async def test_the_concurrency_and_rate_limits_refuse_with_429(
    api: ObservabilityServer, client: aiohttp.ClientSession, sip_phone: SipPhone, clock: FrozenClock
) -> None:
    first_two = []
    for _ in range(2):
        async with client.post(f"{api.url}/calls", json={"to": sip_phone.uri}, headers=AUTH) as response:
            assert response.status == 202
            first_two.append((await _json(response))["id"])
        await _ringing(sip_phone)
    async with client.post(f"{api.url}/calls", json={"to": sip_phone.uri}, headers=AUTH) as response:
        assert response.status == 429 and response.headers["Retry-After"] == "1"
        assert (await _json(response))["error"] == "too_many_calls"  # OUTBOUND_MAX_CONCURRENT=2
    for call_id in first_two:
        async with client.delete(f"{api.url}/calls/{call_id}", headers=AUTH) as response:
            assert response.status == 202
    # Two attempts in this second already (the clock has not moved): the rate limit, not concurrency.
    async with client.post(f"{api.url}/calls", json={"to": sip_phone.uri}, headers=AUTH) as response:
        assert response.status == 429 and (await _json(response))["error"] == "rate_limited"
    clock.now += 1.0
    async with client.post(f"{api.url}/calls", json={"to": sip_phone.uri}, headers=AUTH) as response:
        assert response.status == 202


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"json": {"to": "sip:bob@198.51.100.7"}}, 403, "destination_not_allowed"),
        ({"json": {"to": "+15550100"}}, 422, "invalid_destination"),  # a number, and no SIP_SERVER
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400, "invalid_json"),
        ({"json": ["sip:a@127.0.0.1"]}, 400, "invalid_json"),
        ({"json": {"to": "sip:a@127.0.0.1", "colour": "red"}}, 422, "invalid_request"),
        ({"json": {"to": 15550100}}, 422, "invalid_request"),
        ({"json": {}}, 422, "invalid_request"),
        ({"json": {"to": "sip:a@127.0.0.1", "ring_timeout": 3600}}, 422, "invalid_request"),
        ({"json": {"to": "sip:a@127.0.0.1", "metadata": {"k": "x" * 5000}}}, 422, "invalid_request"),
        ({"json": {"to": "sip:a@127.0.0.1", "webhook_url": "ftp://x"}}, 422, "invalid_request"),
        ({"json": {"to": "sip:a@127.0.0.1", "webhook_url": "https://hooks.example"}}, 422, "invalid_request"),
        ({"data": b"to=sip:a@127.0.0.1"}, 415, "unsupported_media_type"),
        (
            {"data": b"{" + b" " * MAX_BODY_BYTES + b"}", "headers": {"Content-Type": "application/json"}},
            413,
            "body_too_large",
        ),
    ],
    ids=lambda v: str(v)[:30] if not isinstance(v, int) else str(v),
)
async def test_bad_requests_get_the_documented_error(
    api: ObservabilityServer, client: aiohttp.ClientSession, kwargs: dict[str, Any], status: int, code: str
) -> None:
    kwargs = dict(kwargs)
    headers = {**AUTH, **kwargs.pop("headers", {})}
    async with client.post(f"{api.url}/calls", headers=headers, **kwargs) as response:
        assert response.status == status
        error = await _json(response)
    assert error["error"] == code and error["message"]
    assert openapi()["paths"]["/calls"]["post"]["responses"][str(status)]


@pytest.mark.parametrize(
    ("asked", "user", "name"),
    [
        ({"from": "support", "display_name": 'Acme "Clinic" \\ Care'}, "support", 'Acme "Clinic" \\ Care'),
        ({"from": "sip:+15550199@127.0.0.1"}, "+15550199", None),
        ({"display_name": "Dana's reminder line"}, "voicelive", "Dana's reminder line"),
    ],
    ids=["bare-user-and-name", "uri-only", "name-only"],
)
async def test_the_callee_sees_the_from_and_display_name_asked_for(
    api: ObservabilityServer,
    client: aiohttp.ClientSession,
    sip_phone: SipPhone,
    asked: dict[str, str],
    user: str,
    name: str | None,
) -> None:
    async with client.post(f"{api.url}/calls", json={"to": sip_phone.uri, **asked}, headers=AUTH) as response:
        assert response.status == 202
    phone_call = await sip_phone.answer_next()
    assert isinstance(phone_call.call, IncomingCall)
    caller = phone_call.call.request.from_
    assert caller.uri.user == user and caller.uri.host == "127.0.0.1"  # a bare user stays at our host
    assert caller.display_name == name
    await phone_call.hangup()


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"from": "sip:ceo@198.51.100.7"}, 403, "from_not_allowed"),  # another host: caller-ID spoofing
        ({"from": "+15550100"}, 403, "from_not_allowed"),  # our host, a user the allow-list does not name
        ({"from": "tel:+15550199"}, 422, "invalid_from"),
        ({"from": "sip:support@127.0.0.1?Route=%3Csip:x@198.51.100.7%3E"}, 422, "invalid_from"),
        ({"from": "sip:support@127.0.0.1;maddr=198.51.100.7"}, 422, "invalid_from"),
        ({"from": "sip:@127.0.0.1"}, 422, "invalid_from"),
        ({"from": "sip:support@127.0.0.1\r\nX-Injected: 1"}, 422, "invalid_request"),
        ({"from": "s" * 300}, 422, "invalid_request"),
        ({"from": ""}, 422, "invalid_request"),
        ({"from": 15550199}, 422, "invalid_request"),
        ({"from_": "support"}, 422, "invalid_request"),
        ({"display_name": "Acme\r\nX-Injected: 1"}, 422, "invalid_request"),
        ({"display_name": "Acme\x00"}, 422, "invalid_request"),
        ({"display_name": "n" * 65}, 422, "invalid_request"),
        ({"display_name": ""}, 422, "invalid_request"),
    ],
    ids=lambda v: str(v)[:40] if not isinstance(v, int) else str(v),
)
async def test_a_bad_or_unallowed_from_is_refused_and_nothing_is_dialled(
    api: ObservabilityServer,
    client: aiohttp.ClientSession,
    sip_phone: SipPhone,
    fields: dict[str, Any],
    status: int,
    code: str,
) -> None:
    async with client.post(
        f"{api.url}/calls", json={"to": sip_phone.uri, **fields}, headers=AUTH
    ) as response:
        assert response.status == status
        error = await _json(response)
    assert error["error"] == code and error["message"]
    assert openapi()["paths"]["/calls"]["post"]["responses"][str(status)]
    refused = 'voicelive_sip_outbound_refused_total{reason="from_not_allowed"} 1.0'
    async with client.get(f"{api.url}/metrics") as response:
        assert (refused in await response.text()) == (code != "invalid_request")
    await asyncio.sleep(0.2)
    assert sip_phone.ua.active_calls == 0  # no INVITE reached the callee


async def test_a_caller_chosen_from_is_refused_unless_allowed(gateway: Gateway, sip_phone: SipPhone) -> None:
    gateway.settings.gateway.outbound_from_allowed = []  # the default: no caller-chosen From at all
    with pytest.raises(CallFailed) as refused:
        await gateway.call(sip_phone.uri, from_="voicelive")  # even our own user
    assert refused.value.status_code == 403
    with pytest.raises(ValueError, match="printable"):
        await gateway.call(sip_phone.uri, display_name="Acme\r\nX-Injected: 1")
    await asyncio.sleep(0.2)
    assert sip_phone.ua.active_calls == 0  # no INVITE reached the callee


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer"])
async def test_without_the_token_nothing_is_dialled(
    api: ObservabilityServer, client: aiohttp.ClientSession, sip_phone: SipPhone, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in (("POST", "/calls"), ("GET", "/calls"), ("GET", "/calls/x"), ("DELETE", "/calls/x")):
        body = {"to": sip_phone.uri} if method == "POST" else None
        async with client.request(method, f"{api.url}{path}", json=body, headers=headers) as r:
            assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await _json(r))["error"] == "unauthorized"
    assert sip_phone.calls == []
    async with client.get(f"{api.url}/openapi.json") as response:  # the description needs no token
        assert response.status == 200


async def test_unknown_calls_are_404(api: ObservabilityServer, client: aiohttp.ClientSession) -> None:
    for method in ("GET", "DELETE"):
        async with client.request(method, f"{api.url}/calls/call_nope", headers=AUTH) as response:
            assert response.status == 404 and (await _json(response))["error"] == "not_found"


def test_a_public_bind_without_a_token_is_a_startup_error(gateway: Gateway) -> None:
    with pytest.raises(StartupError, match="HTTP_AUTH_TOKEN"):
        CallApi(Dialer(gateway), token=None).check_bind("0.0.0.0")
    CallApi(Dialer(gateway), token=None).check_bind("127.0.0.1")
    CallApi(Dialer(gateway), token=None).check_bind("::1")
    CallApi(Dialer(gateway), token="t").check_bind("0.0.0.0")


async def test_the_openapi_description_is_valid_and_covers_every_route(
    api: ObservabilityServer, client: aiohttp.ClientSession
) -> None:
    async with client.get(f"{api.url}/openapi.json") as response:
        spec = await _json(response)
    validate(spec)  # raises on an invalid OpenAPI 3.1 document
    assert spec["openapi"].startswith("3.")
    app = web_app(api)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    described = {
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "delete", "put", "patch")
    }
    api_routes = {(m, p) for m, p in served if p.startswith("/calls") or p == "/openapi.json"}
    assert api_routes == described


def web_app(server: ObservabilityServer) -> Any:
    runner = server._runner
    assert runner is not None
    return runner.app
