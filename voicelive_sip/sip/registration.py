"""REGISTER (RFC 3261 §10): register, refresh before expiry, back off on failure, unregister on shutdown."""

from __future__ import annotations

import asyncio
import enum
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from .auth import DigestAuthFailed, DigestClient
from .dialog import new_tag
from .headers import CSeq, NameAddress
from .message import Request, Response
from .uri import SipUri

if TYPE_CHECKING:
    from .ua import UserAgent

log = structlog.get_logger("voicelive_sip.sip.registration")

REFRESH_FRACTION = 0.9  # refresh at about 90 % of the granted lifetime
MIN_RETRY = 5.0
MAX_RETRY = 1800.0
AUTH_RETRY = 300.0  # wrong credentials: wait long, do not hammer the registrar


class RegistrationState(enum.Enum):
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"


class RegistrationFailed(Exception):
    """Registration did not succeed: the status (0 for no response) and a reason a person can act on."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(f"{status_code} {reason}" if status_code else reason)
        self.status_code = status_code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    state: RegistrationState
    status_code: int | None
    reason: str
    expires: int | None


class Registration:
    """One binding of our Contact to an address-of-record at a registrar, kept alive by refreshes."""

    def __init__(
        self,
        ua: UserAgent,
        registrar: SipUri,
        aor: SipUri,
        *,
        username: str,
        password: str | None,
        realm: str | None,
        expires: int,
    ) -> None:
        self.ua = ua
        self.registrar = registrar
        self.aor = aor
        self.requested_expires = expires
        self.expires: int | None = None
        self.state = RegistrationState.UNREGISTERED
        self.last_status: int | None = None
        self.reason = ""
        self._auth = DigestClient(username, password, realm=realm) if password is not None else None
        self._call_id = f"{secrets.token_hex(12)}@{ua.via_host.strip('[]')}"
        self._from_tag = new_tag()
        self._seq = 0
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._history: list[RegistrationChanged] = []
        self._history_start = 0  # absolute index of _history[0]; the list is trimmed to stay bounded

    def __repr__(self) -> str:
        return f"<Registration {self.aor} at {self.registrar} {self.state.value}>"

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_registered(self, timeout: float = 30.0) -> None:
        """Return once registered; raise `RegistrationFailed` on failure or timeout."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(
                    lambda: self.state in (RegistrationState.REGISTERED, RegistrationState.FAILED)
                )
        except TimeoutError:
            message = f"no answer from {self.registrar} within {timeout:g} s"
            raise RegistrationFailed(0, message) from None
        if self.state is RegistrationState.FAILED:
            raise RegistrationFailed(self.last_status or 0, self.reason)

    async def events(self) -> AsyncIterator[RegistrationChanged]:
        """State changes from now on (the history so far first)."""
        seen = self._history_start

        def more() -> bool:
            return self._history_start + len(self._history) > seen

        while True:
            async with self._changed:
                await self._changed.wait_for(more)
                batch = self._history[max(0, seen - self._history_start) :]
                seen = self._history_start + len(self._history)
            for change in batch:
                yield change

    async def unregister(self, timeout: float = 4.0) -> None:
        """Remove our binding (Expires: 0) and stop refreshing."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.state is not RegistrationState.REGISTERED:
            await self._set(RegistrationState.UNREGISTERED, None, "stopped", None)
            return
        try:
            async with asyncio.timeout(timeout):
                response = await self._register_once(0)
            status = response.status_code
        except (TimeoutError, DigestAuthFailed):
            status = 0
        await self._set(RegistrationState.UNREGISTERED, status or None, "unregistered", 0)

    # -- the loop --------------------------------------------------------------------------------------
    async def _run(self) -> None:
        expires = self.requested_expires
        retry = MIN_RETRY
        brief = 0
        while True:
            await self._set(RegistrationState.REGISTERING, None, "registering", None)
            try:
                response = await self._register_once(expires)
            except DigestAuthFailed as error:
                await self._fail(
                    401, f"authentication rejected by {error.realm}: wrong username or password?"
                )
                await asyncio.sleep(AUTH_RETRY)
                continue
            code = response.status_code
            if 200 <= code < 300:
                granted = self._granted(response, expires)
                retry, brief = MIN_RETRY, 0
                await self._set(RegistrationState.REGISTERED, code, "registered", granted)
                log.info("sip.registered", aor=str(self.aor), registrar=str(self.registrar), expires=granted)
                await asyncio.sleep(max(1.0, granted * REFRESH_FRACTION))
                continue
            if code == 423 and brief < 3:
                # RFC 3261 §10.2.8: ask again with at least Min-Expires.
                min_expires = response.headers.get("Min-Expires")
                if min_expires and min_expires.strip().isdigit():
                    expires, brief = max(expires, int(min_expires.strip())), brief + 1
                    continue
            if code in (401, 407):
                await self._fail(code, "challenged, and no usable credentials are configured (AUTH_PASSWORD)")
                await asyncio.sleep(AUTH_RETRY)
                continue
            reason = "no response (timeout)" if code == 408 else response.reason
            await self._fail(code, reason)
            await asyncio.sleep(retry)
            retry = min(MAX_RETRY, retry * 2)

    async def _register_once(self, expires: int) -> Response:
        destination, transport = await self.ua._resolve(self.registrar)
        contact = self.ua.contact(transport)

        def build() -> Request:
            self._seq += 1
            request = Request("REGISTER", self.registrar.without_params("transport").with_headers(()))
            h = request.headers
            h.add("Max-Forwards", 70)
            h.add("From", NameAddress(self.aor, self.ua.settings.display_name, (("tag", self._from_tag),)))
            h.add("To", NameAddress(self.aor, self.ua.settings.display_name))
            h.add("Call-ID", self._call_id)
            h.add("CSeq", CSeq(self._seq, "REGISTER"))
            h.add("Contact", contact)
            h.add("Expires", expires)
            return request

        response = await self.ua._authenticated(build, destination, transport, self._auth)
        if response.status_code in (401, 407) and self._auth is not None:
            raise DigestAuthFailed(self.registrar.host, "challenged again after answering")
        return response

    def _granted(self, response: Response, asked: int) -> int:
        """The lifetime granted to our Contact: its expires param, else Expires, else what we asked."""
        ours = self.ua.contact().uri
        assert isinstance(ours, SipUri)
        for contact in response.contact:
            uri = contact.uri
            mine = isinstance(uri, SipUri) and (uri.host, uri.port) == (ours.host, ours.port)
            if mine and contact.expires is not None:
                return contact.expires
        return response.expires if response.expires is not None else asked

    async def _fail(self, status: int, reason: str) -> None:
        log.warning(
            "sip.registration_failed",
            aor=str(self.aor),
            registrar=str(self.registrar),
            status=status,
            reason=reason,
        )
        await self._set(RegistrationState.FAILED, status, reason, None)

    async def _set(
        self, state: RegistrationState, status: int | None, reason: str, expires: int | None
    ) -> None:
        self.state, self.last_status, self.reason = state, status, reason
        if expires is not None:
            self.expires = expires
        async with self._changed:
            self._history.append(RegistrationChanged(state, status, reason, expires))
            if len(self._history) > 64:
                self._history_start += len(self._history) - 64
                del self._history[:-64]
            self._changed.notify_all()
