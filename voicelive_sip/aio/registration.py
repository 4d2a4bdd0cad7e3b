"""REGISTER on asyncio: drives the sans-I/O `RegistrationBinding` (register, refresh, back off, remove)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

from .._logger import get_logger
from ..errors import RegistrationFailed
from ..sip.auth import DigestAuthFailed, DigestClient
from ..sip.binding import RegistrationBinding, RegistrationChanged, RegistrationState
from ..sip.headers import NameAddress
from ..sip.message import Request, Response
from ..sip.transaction_events import Address
from ..sip.uri import SipUri
from .endpoint import SipEndpoint

log = get_logger("voicelive_sip.sip.registration")

MAX_HISTORY = 64


class Registration:
    """One binding of our Contact to an address-of-record at a registrar, kept alive by refreshes."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        registrar: SipUri,
        aor: SipUri,
        *,
        username: str,
        password: str | None,
        realm: str | None,
        expires: int,
    ) -> None:
        self._endpoint = endpoint
        self.registrar = registrar
        self.aor = aor
        self.requested_expires = expires
        self._binding = RegistrationBinding(
            registrar, aor, call_id=f"{secrets.token_hex(12)}@{endpoint.via_host.strip('[]')}",
            expires=expires, now=endpoint.now(), display_name=endpoint.options.display_name,
        )  # fmt: skip
        self._auth = DigestClient(username, password, realm=realm) if password is not None else None
        self._task: asyncio.Task[None] | None = None
        self._flow: tuple[Address, str] | None = None  # the TCP/TLS connection the binding was made over
        self._changed = asyncio.Condition()
        self._history: list[RegistrationChanged] = []
        self._history_start = 0  # absolute index of _history[0]; the list is trimmed to stay bounded

    def __repr__(self) -> str:
        return f"<Registration {self.aor} at {self.registrar} {self.state.value}>"

    @property
    def state(self) -> RegistrationState:
        return self._binding.state

    @property
    def expires(self) -> int | None:
        """The lifetime the registrar granted (s)."""
        return self._binding.expires

    @property
    def last_status(self) -> int | None:
        return self._binding.last_status

    @property
    def reason(self) -> str:
        return self._binding.reason

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"sip.register:{self.aor}")

    async def wait_registered(self, timeout: float = 30.0) -> None:
        """Return once registered; raise `RegistrationFailed` on failure or timeout."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(
                    lambda: self.state in (RegistrationState.REGISTERED, RegistrationState.FAILED)
                )
        except TimeoutError:
            raise RegistrationFailed(0, f"no answer from {self.registrar} within {timeout:g} s") from None
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
        status: int | None = None
        if self._binding.bound:
            try:
                async with asyncio.timeout(timeout):
                    status = (await self._send(0))[0].status_code
            except (TimeoutError, DigestAuthFailed) as error:
                log.info("sip.unregister_failed", aor=str(self.aor), error=type(error).__name__)
        self._binding.stopped(status)
        await self._publish()

    # -- the loop --------------------------------------------------------------------------------------
    async def _run(self) -> None:
        binding, endpoint = self._binding, self._endpoint
        while True:
            due = binding.get_timer()
            if due is None:
                return
            await self._wait_keeping_alive(due)
            binding.sending()
            await self._publish()
            try:
                response, contact = await self._send(None)
            except DigestAuthFailed as error:
                binding.auth_rejected(error.realm, endpoint.now())
            else:
                binding.receive_response(response, contact, endpoint.now())
            state = binding.state
            if state is RegistrationState.REGISTERED:
                log.info(
                    "sip.registered",
                    aor=str(self.aor),
                    registrar=str(self.registrar),
                    expires=binding.expires,
                )
            elif state is RegistrationState.FAILED:
                log.warning(
                    "sip.registration_failed", aor=str(self.aor), registrar=str(self.registrar),
                    status=binding.last_status, reason=binding.reason,
                )  # fmt: skip
            await self._publish()

    async def _wait_keeping_alive(self, due: float) -> None:
        """Sleep until `due`; meanwhile ping the registrar's TCP/TLS connection every SIP_KEEPALIVE_INTERVAL,
        and refresh at once when that connection is lost (RFC 5626 §4.4.1 flow recovery), so the registrar
        can always reach us over it."""
        endpoint, interval = self._endpoint, self._endpoint.options.keepalive_interval
        while (left := due - endpoint.now()) > 0:
            flow = self._flow
            if flow is None or interval <= 0 or not self._binding.bound:
                await asyncio.sleep(left)
                return
            await asyncio.sleep(min(left, interval))
            if endpoint.now() >= due:
                return
            if not endpoint.keep_alive(*flow):
                log.info("sip.registration_flow_lost", aor=str(self.aor), registrar=str(self.registrar))
                self._binding.flow_failed(endpoint.now())
                return

    async def _send(self, expires: int | None) -> tuple[Response, NameAddress]:
        destination, transport = await self._endpoint.resolve(self.registrar)
        self._flow = (destination, transport) if transport != "UDP" else None
        contact = self._endpoint.contact(transport, secure=self.registrar.secure, peer=destination[0])

        def build() -> Request:
            return self._binding.build(contact, expires=expires)

        response, _ = await self._endpoint.authenticated(build, destination, transport, self._auth)
        if response.status_code in (401, 407) and self._auth is not None:
            raise DigestAuthFailed(self.registrar.host, "challenged again after answering")
        return response, contact

    async def _publish(self) -> None:
        async with self._changed:
            while (change := self._binding.next_change()) is not None:
                self._history.append(change)
            if len(self._history) > MAX_HISTORY:
                self._history_start += len(self._history) - MAX_HISTORY
                del self._history[:-MAX_HISTORY]
            self._changed.notify_all()


__all__ = ["Registration", "RegistrationChanged", "RegistrationFailed", "RegistrationState"]
