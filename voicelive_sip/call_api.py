"""CallApi: POST/GET/DELETE /calls on the gateway's HTTP server, bearer-token auth, JSON errors, OpenAPI.

Every input is hostile: the body is bounded (MAX_BODY_BYTES) and must be a JSON object with only the
documented fields, within their bounds (metadata: MAX_METADATA_BYTES of JSON). Errors are
`{"error": code, "message": reason}` with the status the OpenAPI description (`/openapi.json`) names.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._logger import get_logger
from .aio.resolve import MAX_CALLER_LENGTH, MAX_DISPLAY_NAME_LENGTH, check_display_name
from .amd import AmdPolicy
from .config import StartupError
from .dialer import Dialer, DialRequest, OutboundCall, Refused
from .gateway import amd_policy

__all__ = [
    "MAX_BODY_BYTES",
    "AmdRequest",
    "CallApi",
    "CallRequest",
    "bearer_ok",
    "is_loopback",
    "openapi",
    "require_token",
]

log = get_logger("voicelive_sip.call_api")

MAX_BODY_BYTES = 64 * 1024
MAX_METADATA_BYTES = 4096
MAX_METADATA_KEYS = 32
MAX_LISTED = 500
NO_STORE = {"Cache-Control": "no-store"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AmdRequest(BaseModel):
    """The `amd` field of POST /calls: answering-machine detection for this call."""

    model_config = ConfigDict(extra="forbid", strict=True, title="AmdRequest")

    enabled: bool = Field(default=True, description="Detect a person or a machine before the agent speaks.")
    machine_action: Literal["hangup", "voicemail"] | None = Field(
        default=None,
        description="On a machine: hang up, or leave a voicemail after the beep (AMD_MACHINE_ACTION).",
    )
    voicemail_message: Annotated[str, Field(min_length=1, max_length=2_000)] | None = Field(
        default=None,
        description="The voicemail message, said word for word (default: AMD_VOICEMAIL_MESSAGE).",
    )
    voicemail_instructions: Annotated[str, Field(min_length=1, max_length=16_000)] | None = Field(
        default=None,
        description="Instructions the agent composes the voicemail message from, when there is no "
        "voicemail_message (default: AMD_VOICEMAIL_INSTRUCTIONS).",
    )


class CallRequest(BaseModel):
    """The body of POST /calls."""

    model_config = ConfigDict(extra="forbid", strict=True, title="CallRequest", populate_by_name=False)

    to: Annotated[str, Field(min_length=1, max_length=256)] = Field(
        description="Number or SIP URI to call; must match GATEWAY_OUTBOUND_ALLOWED.",
        examples=["+15550100", "sip:bob@pbx.example.com"],
    )
    from_: Annotated[str, Field(min_length=1, max_length=MAX_CALLER_LENGTH)] | None = Field(
        default=None,
        alias="from",
        description="The caller this call shows (From): a sip: or sips: URI, user@host, or a bare user at "
        "SIP_SERVER's host; must match OUTBOUND_FROM_ALLOWED (empty: refused). Default: SIP_USER.",
        examples=["+15550199", "sip:support@pbx.example.com"],
    )
    display_name: Annotated[str, Field(min_length=1, max_length=MAX_DISPLAY_NAME_LENGTH)] | None = Field(
        default=None,
        description="The caller's display name in From (printable, no line breaks); default: "
        "SIP_DISPLAY_NAME.",
        examples=["Acme Clinic"],
    )
    instructions: Annotated[str, Field(max_length=16_000)] | None = Field(
        default=None, description="System prompt for this call (default: VOICE_LIVE_INSTRUCTIONS)."
    )
    voice: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, description="Voice for this call (default: VOICE_LIVE_VOICE)."
    )
    greeting: Annotated[str, Field(max_length=2_000)] | None = Field(
        default=None,
        description="What the agent says first when answered (default: VOICE_LIVE_PROACTIVE_GREETING).",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description=f"Free-form JSON object (at most {MAX_METADATA_KEYS} keys, {MAX_METADATA_BYTES} bytes) "
        "handed to tools (CallInfo.metadata) and included in every webhook of the call.",
    )
    webhook_url: Annotated[str, Field(max_length=2_048)] | None = Field(
        default=None, description="Receiver of this call's webhooks instead of WEBHOOK_URLS (http or https)."
    )
    ring_timeout: Annotated[float, Field(gt=0, le=300)] | None = Field(
        default=None, description="Seconds to ring before giving up (default: OUTBOUND_RING_TIMEOUT)."
    )
    amd: bool | AmdRequest | None = Field(
        default=None,
        description="Answering-machine detection: true or false, or an object with the voicemail policy "
        "(default: AMD_ENABLED and the AMD_* settings).",
    )

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"at most {MAX_METADATA_KEYS} keys")
        if len(json.dumps(value, separators=(",", ":")).encode()) > MAX_METADATA_BYTES:
            raise ValueError(f"at most {MAX_METADATA_BYTES} bytes of JSON")
        return value

    @field_validator("from_")
    @classmethod
    def _printable_caller(cls, value: str | None) -> str | None:
        if value is not None and (not value.isprintable() or any(c.isspace() for c in value)):
            raise ValueError("no spaces, line breaks or control characters")
        return value

    @field_validator("display_name")
    @classmethod
    def _printable_name(cls, value: str | None) -> str | None:
        return check_display_name(value) if value is not None else None

    @field_validator("webhook_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL")
        return value


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps a server on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bearer_ok(request: web.Request, token: bytes | None) -> bool:
    """Whether `request` has `Authorization: Bearer <token>` (constant-time compare); True without a token."""
    if token is None:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)


def require_token(host: str, token: bytes | None, what: str) -> None:
    """HTTP_AUTH_TOKEN is required unless the server listens on loopback only: StartupError naming `what`."""
    if token is None and not is_loopback(host):
        raise StartupError(
            [f"HTTP_AUTH_TOKEN: not set, and {what} {host}; set a token or METRICS_HOST=127.0.0.1"]
        )


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps({"error": code, "message": message}, separators=(",", ":"))
    return web.Response(
        status=status, text=body, content_type="application/json", headers={**NO_STORE, **(headers or {})}
    )


def _ok(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    text = json.dumps(body, default=str, separators=(",", ":"))
    return web.Response(
        status=status, text=text, content_type="application/json", headers={**NO_STORE, **(headers or {})}
    )


class CallApi:
    """The call API's routes on an aiohttp application, answering for one `Dialer`."""

    def __init__(self, dialer: Dialer, *, token: str | None) -> None:
        self.dialer = dialer
        self._token = token.encode() if token else None
        self._webhooks_signed = dialer.gateway.webhooks is not None

    def check_bind(self, host: str) -> None:
        """A token is required unless the server listens on loopback only: StartupError otherwise."""
        require_token(host, self._token, "the call API (OUTBOUND_API_ENABLED) would listen on")

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/calls", self._guarded(self._create))
        app.router.add_get("/calls", self._guarded(self._list))
        app.router.add_get("/calls/{id}", self._guarded(self._show))
        app.router.add_delete("/calls/{id}", self._guarded(self._delete))
        app.router.add_get("/openapi.json", self._openapi)

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not bearer_ok(request, self._token):
                log.warning("security.call_api_unauthorized", remote=request.remote)
                return _error(
                    401,
                    "unauthorized",
                    "a valid bearer token is required (Authorization: Bearer ...)",
                    {"WWW-Authenticate": 'Bearer realm="voicelive-sip"'},
                )
            try:
                return await handler(request)
            except Refused as refused:
                headers = {}
                if refused.retry_after is not None:
                    headers["Retry-After"] = str(max(1, math.ceil(refused.retry_after)))
                return _error(refused.status, refused.code, refused.message, headers)

        return guarded

    async def _create(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return _error(415, "unsupported_media_type", "send the call as Content-Type: application/json")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _error(413, "body_too_large", f"the body may be at most {MAX_BODY_BYTES} bytes")
        try:
            raw = await request.content.read(MAX_BODY_BYTES + 1)
        except (ValueError, OSError) as error:
            return _error(400, "invalid_body", f"the body could not be read: {error}")
        if len(raw) > MAX_BODY_BYTES:
            return _error(413, "body_too_large", f"the body may be at most {MAX_BODY_BYTES} bytes")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return _error(400, "invalid_json", "the body is not JSON")
        if not isinstance(data, dict):
            return _error(400, "invalid_json", "the body must be a JSON object")
        try:
            body = CallRequest.model_validate(data)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in item['loc']) or 'body'}: {item['msg']}" for item in error.errors()
            )
            return _error(422, "invalid_request", problems[:2000])
        if body.webhook_url is not None and not self._webhooks_signed:
            return _error(422, "invalid_request", "webhook_url: webhooks need WEBHOOK_SECRET on the gateway")
        call = self.dialer.place(
            DialRequest(
                to=body.to,
                instructions=body.instructions,
                voice=body.voice,
                greeting=body.greeting,
                metadata=body.metadata,
                webhook_url=body.webhook_url,
                ring_timeout=body.ring_timeout,
                amd=self._amd(body.amd),
                from_=body.from_,
                display_name=body.display_name,
            )
        )
        return _ok(202, {"id": call.id, "state": call.state}, {"Location": f"/calls/{call.id}"})

    def _amd(self, requested: bool | AmdRequest | None) -> AmdPolicy | None:
        """The call's AMD policy from the request and the AMD_* settings (None: off)."""
        settings = self.dialer.gateway.settings.amd
        if requested is None:
            return amd_policy(settings)
        if isinstance(requested, bool):
            return amd_policy(settings, enabled=requested)
        return amd_policy(
            settings,
            enabled=requested.enabled,
            machine_action=requested.machine_action,
            voicemail_message=requested.voicemail_message,
            voicemail_instructions=requested.voicemail_instructions,
        )

    async def _list(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            return _error(400, "invalid_query", "limit must be a number")
        limit = max(1, min(limit, MAX_LISTED))
        calls = [_brief(call) for call in self.dialer.calls()[:limit]]
        return _ok(200, {"calls": calls})

    async def _show(self, request: web.Request) -> web.Response:
        call = self.dialer.get(request.match_info["id"])
        if call is None:
            return _error(404, "not_found", f"no call {request.match_info['id'][:64]}")
        return _ok(200, call.to_json())

    async def _delete(self, request: web.Request) -> web.Response:
        call = await self.dialer.hang_up(request.match_info["id"])
        return _ok(202, {"id": call.id, "state": call.state})

    async def _openapi(self, request: web.Request) -> web.Response:
        return _ok(200, openapi())


def _brief(call: OutboundCall) -> dict[str, Any]:
    data = call.to_json()
    data.pop("summary")
    return data


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "Machine-readable reason code."},
            "message": {"type": "string", "description": "What was wrong, for a person."},
        },
    }


def _call_schema() -> dict[str, Any]:
    nullable_string = {"type": ["string", "null"]}
    return {
        "type": "object",
        "required": ["id", "to", "state", "metadata", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "to": {"type": "string"},
            "state": {"type": "string", "enum": ["dialing", "answered", "ended"]},
            "metadata": {"type": "object"},
            "created_at": {"type": "string", "format": "date-time"},
            "answered_at": nullable_string,
            "ended_at": nullable_string,
            "end_reason": {
                **nullable_string,
                "description": "busy, no-answer, declined, cancelled, failed, voicelive-unavailable, or how "
                "an answered call ended (bye, agent-hangup, transferred, media-timeout...).",
            },
            "sip_status": {"type": ["integer", "null"]},
            "sip_call_id": nullable_string,
            "amd": {
                "type": ["object", "null"],
                "description": "Answering-machine detection: status (HUMAN, MACHINE, NOTSURE), cause, at_ms, "
                "action (conversation, hangup, voicemail), beep_at_ms, beep_hz, greeting_ended, "
                "message_at_ms; null until a verdict, or without AMD.",
            },
            "summary": {
                "type": ["object", "null"],
                "description": "The call summary (timings, RTP statistics, tokens, transcript, tool calls, "
                "recording path) once an answered call has ended; GET /calls leaves it out.",
            },
        },
    }


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the call API."""

    def error(description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }

    def call_ref(name: str) -> dict[str, Any]:
        return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}

    request_schema = CallRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    nested = request_schema.pop("$defs", {})  # AmdRequest: a component of its own, where the $ref points
    unauthorized = error("Missing or wrong bearer token (HTTP_AUTH_TOKEN).")
    call_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    accepted = {
        "type": "object",
        "required": ["id", "state"],
        "properties": {"id": {"type": "string"}, "state": {"type": "string"}},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "voicelive-sip call API",
            "version": "1",
            "description": "Place outbound calls bridged to Azure AI Voice Live, follow them and end them.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "CallRequest": request_schema,
                **nested,
                "Call": _call_schema(),
                "Accepted": accepted,
                "Error": _error_schema(),
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/calls": {
                "post": {
                    "summary": "Place a call",
                    "operationId": "createCall",
                    "requestBody": {"required": True, **call_ref("CallRequest")},
                    "responses": {
                        "202": {
                            "description": "Dialling; follow it with GET /calls/{id}.",
                            **call_ref("Accepted"),
                        },
                        "400": error("The body is not a JSON object (invalid_json)."),
                        "401": unauthorized,
                        "403": error(
                            "The destination is not in GATEWAY_OUTBOUND_ALLOWED (destination_not_allowed), "
                            "or from is not in OUTBOUND_FROM_ALLOWED (from_not_allowed)."
                        ),
                        "413": error("The body is larger than 64 KiB (body_too_large)."),
                        "415": error("The body is not application/json (unsupported_media_type)."),
                        "422": error(
                            "Unknown fields, wrong types or values out of bounds (invalid_request), "
                            "a destination that is not a number or SIP URI "
                            "(invalid_destination), or a from that is not a sip:/sips: URI or user "
                            "(invalid_from)."
                        ),
                        "429": error(
                            "OUTBOUND_MAX_CONCURRENT calls in progress (too_many_calls) or "
                            "OUTBOUND_MAX_ATTEMPTS_PER_SECOND reached (rate_limited); see "
                            "Retry-After."
                        ),
                        "503": error("The gateway is starting, draining or stopped (unavailable)."),
                    },
                },
                "get": {
                    "summary": "List calls, most recent first (without summaries)",
                    "operationId": "listCalls",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LISTED},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The calls placed through this API that are still remembered.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["calls"],
                                        "properties": {
                                            "calls": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/Call"},
                                            }
                                        },
                                    }
                                }
                            },
                        },
                        "400": error("limit is not a number (invalid_query)."),
                        "401": unauthorized,
                    },
                },
            },
            "/calls/{id}": {
                "parameters": [call_id],
                "get": {
                    "summary": "One call: state, timings, summary once ended",
                    "operationId": "getCall",
                    "responses": {
                        "200": {"description": "The call.", **call_ref("Call")},
                        "401": unauthorized,
                        "404": error("No such call (not_found)."),
                    },
                },
                "delete": {
                    "summary": "Hang up (BYE) or cancel (CANCEL) a call",
                    "operationId": "endCall",
                    "responses": {
                        "202": {"description": "Ending; GET shows the outcome.", **call_ref("Accepted")},
                        "401": unauthorized,
                        "404": error("No such call (not_found)."),
                        "409": error("The call has ended already (call_ended)."),
                    },
                },
            },
            "/openapi.json": {
                "get": {
                    "summary": "This description",
                    "operationId": "openapi",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1 document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                },
            },
        },
    }
