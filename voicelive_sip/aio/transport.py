"""SIP transports on asyncio: UDP and TCP on one address and port, TLS on its own (RFC 3261 §18, §26).

The only socket code of SIP. Received bytes become parsed messages handed to `on_message`; what cannot be
parsed goes to `on_parse_error` with enough context to answer 400 (413 when too large). Stream connections
(TCP and TLS) are reused per peer, closed when idle or when a message takes too long to arrive, and limited in
number overall and per source; a framing error closes that connection only. TLS runs over a plain TCP
connection in memory buffers (`TlsSession`), so an incoming TLS connection counts against those limits from
its first byte, its handshake has a deadline, and a failed or stalled handshake is logged with its reason
and closed, the same on asyncio's loop and on uvloop. RFC 5626 keep-alives:
a double-CRLF ping on a stream is answered with a CRLF pong, and `keep_alive()` pings a connection we opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

from .._logger import get_logger
from ..errors import SipParseError, VoiceLiveSipError
from ..sip.framing import StreamFramer
from ..sip.message import MAX_MESSAGE_SIZE, Request, Response, parse_message
from ..sip.transaction_events import Address, Outgoing
from .tls import TlsContexts, TlsSession, describe_tls_error

log = get_logger("voicelive_sip.sip.transport")

MessageHandler = Callable[[Request | Response, Address, str], None]
ParseErrorHandler = Callable[[SipParseError, Address, str], None]
SendErrorHandler = Callable[[Outgoing, Exception], None]


UDP_BUFFER_BYTES = 4 << 20
STREAM_TRANSPORTS = ("TCP", "TLS")
PONG_TIMEOUT = 10.0  # RFC 5626 §4.4.1: a ping not answered this long means the flow failed
MAX_SERVER_NAMES = 1024
ConnectionKey = tuple[str, Address]  # (transport name, peer address)


def _enlarge_buffers(sock: socket.socket | None) -> None:
    """Room for bursts: a full kernel receive queue drops datagrams (an ACK lost there costs a call)."""
    if sock is None:
        return
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, UDP_BUFFER_BYTES)
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    if force is not None:  # Linux, with CAP_NET_ADMIN: beyond net.core.rmem_max
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, force, UDP_BUFFER_BYTES)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: TransportLayer) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        source = (addr[0], addr[1])
        if data.strip(b"\r\n") == b"":
            return  # RFC 5626 keep-alive (CRLF) on UDP
        if not self.owner.admit(source):
            return  # a banned source costs no parsing
        try:
            message = parse_message(data, max_size=self.owner.max_message_size)
        except SipParseError as error:
            self.owner.on_parse_error(error, source, "UDP")
            return
        self.owner.deliver(message, source, "UDP")

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the transaction timers deal with the consequences.
        log.debug("sip.udp_error", error=str(exc))


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection: framing in, writes out, an idle timer and a deadline per message.

    TLS runs over the plain connection in a `TlsSession` whose handshake must finish within the owner's
    `handshake_timeout`; `ready` completes when SIP can flow (at once for TCP), or fails with the reason.
    """

    def __init__(
        self,
        owner: TransportLayer,
        transport_name: str,
        *,
        outbound: Address | None = None,
        tls: TlsSession | None = None,
    ) -> None:
        self.owner = owner
        self.name = transport_name
        self.framer = StreamFramer(owner.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer: Address | None = outbound
        self.outbound_key = outbound
        self.last_activity = owner.loop.time()
        self.closed = owner.loop.create_future()
        self.ready: asyncio.Future[None] = owner.loop.create_future()
        self.counted_source: str | None = None  # set while this inbound connection counts for its source
        self.ping_sent_at: float | None = None  # our unanswered RFC 5626 ping
        self.answers_pings = False  # the peer has answered a ping: a missing pong then means a dead flow
        self.tls = tls
        self._handshake_deadline: asyncio.TimerHandle | None = None
        self._message_deadline: asyncio.TimerHandle | None = None
        self._deadline_for: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer is not None:
            self.peer = (peer[0], peer[1])
        if not self.owner.register_connection(self):
            transport.close()
            return
        if self.tls is None:
            self.ready.set_result(None)
            return
        timeout = self.owner.handshake_timeout
        self._handshake_deadline = self.owner.loop.call_later(timeout, self._handshake_timed_out)
        first_flight = self.tls.start()
        if first_flight:
            self.transport.write(first_flight)

    def _handshake_timed_out(self) -> None:
        self._handshake_deadline = None
        self._tls_failed(TimeoutError(f"handshake not finished within {self.owner.handshake_timeout:g} s"))

    def _tls_failed(self, error: BaseException) -> None:
        assert self.peer is not None
        reason = describe_tls_error(error)
        if self.outbound_key is None:  # an outgoing connection's failure is logged with its destination
            self.owner.tls_handshake_failures += 1
            log.info("sip.tls_handshake_failed", source=self.peer[0], port=self.peer[1], reason=reason)
        if not self.ready.done():
            self.ready.set_exception(ConnectFailed("TLS", self.peer, reason))
            self.ready.exception()  # retrieved here: nobody may be waiting for an inbound connection
        self.close()

    def data_received(self, data: bytes) -> None:
        now = self.last_activity = self.owner.loop.time()
        assert self.peer is not None
        if self.tls is not None:
            data = self._decrypt(data)
            if not data:
                return
        line_breaks, pings = self.framer.keepalive_line_breaks, self.framer.pings
        try:
            items = self.framer.feed(data, now)
        except SipParseError as error:
            log.info("sip.tcp_framing_error", peer=self.peer, error=error.detail, status=error.status_code)
            if error.is_request:  # a 413 whose Via was readable: answered before the close
                self.owner.on_parse_error(error, self.peer, self.name)
            self.close()
            return
        if self.framer.keepalive_line_breaks != line_breaks:
            self._keepalive(self.framer.pings - pings)
        self._arm_message_deadline()
        for item in items:
            if not self.owner.admit(self.peer):
                continue
            if isinstance(item, SipParseError):
                self.owner.on_parse_error(item, self.peer, self.name)
            else:
                self.owner.deliver(item, self.peer, self.name)

    def _decrypt(self, data: bytes) -> bytes:
        tls, transport = self.tls, self.transport
        assert tls is not None and transport is not None and self.peer is not None
        was_established = tls.established
        try:
            plain, reply = tls.receive(data)
        except ssl.SSLError as error:  # plain text on the TLS port, a certificate refused, a bad record
            if was_established:
                log.info("sip.tls_error", peer=self.peer, reason=describe_tls_error(error))
                self.close()
            else:
                self._tls_failed(error)
            return b""
        if reply:
            transport.write(reply)
        if tls.established and not was_established:
            if self._handshake_deadline is not None:
                self._handshake_deadline.cancel()
                self._handshake_deadline = None
            log.debug(
                "sip.tls_established", peer=self.peer, outbound=self.outbound_key is not None,
                version=tls.version, peer_certificate=tls.peer_subject(),
            )  # fmt: skip
            if not self.ready.done():
                self.ready.set_result(None)
        if tls.closed_by_peer:
            self.close()
        return plain

    def _arm_message_deadline(self) -> None:
        started = self.framer.pending_since
        if started == self._deadline_for:
            return
        if self._message_deadline is not None:
            self._message_deadline.cancel()
            self._message_deadline = None
        self._deadline_for = started
        if started is not None:
            when = started + self.owner.message_timeout
            self._message_deadline = self.owner.loop.call_at(when, self._message_timed_out)

    def _message_timed_out(self) -> None:
        # Slowloris: the idle timer is reset by every byte, this deadline only by a whole message.
        self._message_deadline = None
        log.info("sip.tcp_message_timeout", peer=self.peer, buffered=self.framer.buffered)
        self.close()

    def _keepalive(self, pings: int) -> None:
        if self.ping_sent_at is not None:
            self.ping_sent_at = None  # the pong to our ping: a CRLF (RFC 5626 §4.4.1)
            self.answers_pings = True
        if pings:
            self._put(b"\r\n")  # the peer's double-CRLF ping gets its pong (RFC 5626 §3.5.1)

    def ping(self) -> None:
        """Send an RFC 5626 double-CRLF ping; the flow is dead if a peer that answers pings stops doing so."""
        now = self.owner.loop.time()
        if self.ping_sent_at is not None and self.answers_pings and now - self.ping_sent_at > PONG_TIMEOUT:
            log.info("sip.keepalive_failed", peer=self.peer, transport=self.name)
            self.close()
            return
        if self.ping_sent_at is None:
            self.ping_sent_at = now
        self._put(b"\r\n\r\n")  # not activity: a ping must not keep an idle flow open

    def write(self, data: bytes) -> None:
        self.last_activity = self.owner.loop.time()
        self._put(data)

    def _put(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or not self.ready.done() or self.ready.exception():
            return
        if self.tls is not None:
            try:
                data = self.tls.send(data)
            except ssl.SSLError as error:
                log.info("sip.tls_error", peer=self.peer, reason=describe_tls_error(error))
                self.close()
                return
        transport.write(data)

    def close(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.tls is not None and self.tls.established:
            with contextlib.suppress(OSError):
                transport.write(self.tls.close())  # close_notify
        transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed.done():
            return
        for handle in (self._message_deadline, self._handshake_deadline):
            if handle is not None:
                handle.cancel()
        self._message_deadline = self._handshake_deadline = None
        if not self.ready.done():
            assert self.peer is not None
            self.ready.set_exception(
                ConnectFailed(self.name, self.peer, "connection closed during the handshake")
            )
            self.ready.exception()
        self.owner.unregister_connection(self)
        self.closed.set_result(None)


class ConnectFailed(VoiceLiveSipError, ConnectionError):
    """A connection we opened failed (refused, timed out, or its TLS handshake or certificate check)."""

    def __init__(self, transport: str, destination: Address, reason: str) -> None:
        super().__init__(f"{transport} connection to {destination[0]}:{destination[1]} failed: {reason}")
        self.transport = transport
        self.destination = destination
        self.reason = reason


class _RefusalLog:
    """Logs refused connections at most once per source per second, with how many went unlogged."""

    MAX_SOURCES = 4096

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}  # source -> (time logged, refusals since)

    def refused(self, source: str, limit_kind: str, limit: int, now: float) -> None:
        logged, suppressed = self._last.get(source, (float("-inf"), 0))
        if now - logged < 1.0:
            self._last[source] = (logged, suppressed + 1)
            return
        if len(self._last) >= self.MAX_SOURCES:
            self._last = {s: v for s, v in self._last.items() if now - v[0] < 1.0}
            if len(self._last) >= self.MAX_SOURCES:
                return  # refusing anyway; the log line is what a flood of sources must not get
        self._last[source] = (now, 0)
        log.warning(
            "sip.tcp_connection_refused", source=source, limit=limit_kind, max=limit, suppressed=suppressed
        )


class BindFailed(VoiceLiveSipError, OSError):
    """A listening socket could not be bound: `transport` (UDP, TCP, TLS) on `address`; errno says why."""

    def __init__(self, error: OSError, transport: str, address: Address) -> None:
        # uvloop raises a plain OSError("could not bind ...") whose cause carries the errno.
        cause = error.__cause__ if error.errno is None and isinstance(error.__cause__, OSError) else error
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.transport = transport
        self.address = address


class TransportLayer:
    """UDP and TCP listening on one port, TLS on another; sends `Outgoing` items, delivers parsed messages."""

    def __init__(
        self,
        on_message: MessageHandler,
        on_parse_error: ParseErrorHandler,
        on_send_error: SendErrorHandler,
        admit: Callable[[Address], bool] | None = None,
        *,
        max_connections: int = 1024,
        max_connections_per_source: int = 32,
        idle_timeout: float = 300.0,
        message_timeout: float = 10.0,
        max_message_size: int = MAX_MESSAGE_SIZE,
        connect_timeout: float = 5.0,
        max_pending_writes: int = 64,
        tls: TlsContexts | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.on_message = on_message
        self.on_parse_error = on_parse_error
        self.on_send_error = on_send_error
        # Every packet or stream message is offered here first (flood control), before it is parsed.
        self.admit: Callable[[Address], bool] = admit or (lambda source: True)
        self.max_connections = max_connections
        self.max_connections_per_source = max_connections_per_source
        self.idle_timeout = idle_timeout
        self.message_timeout = message_timeout
        self.max_message_size = max_message_size
        self.connect_timeout = connect_timeout
        self.max_pending_writes = max_pending_writes
        self.tls = tls
        self.handshake_timeout = tls.handshake_timeout if tls is not None else 10.0
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp_server: asyncio.Server | None = None
        self.tls_server: asyncio.Server | None = None
        self.address: Address = ("0.0.0.0", 0)
        self.tls_address: Address | None = None
        self.tls_handshake_failures = 0  # incoming TLS connections whose handshake failed or timed out
        self.connections: dict[ConnectionKey, StreamConnection] = {}
        # The name a TLS destination's certificate must carry (SNI and the check), when it is not its IP.
        self.server_names: dict[Address, str] = {}
        # Inbound connections per source IP; an entry goes when its count reaches 0, so at most
        # max_connections entries.
        self._per_source: dict[str, int] = {}
        self._refusals = _RefusalLog()
        self._connecting: dict[ConnectionKey, list[Outgoing]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle_handle: asyncio.TimerHandle | None = None

    @property
    def transports(self) -> list[str]:
        servers = (("UDP", self.udp), ("TCP", self.tcp_server), ("TLS", self.tls_server))
        return [name for name, on in servers if on is not None]

    def spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(
        self, host: str, port: int, transports: Sequence[str], tls_port: int | None = None
    ) -> Address:
        """Bind the requested transports on one port (with port 0, one free for both), and the TLS listener
        on `tls_port` when there is a server certificate."""
        if self.tls is not None and self.tls.server is not None and tls_port is not None:
            server = self.tls.server
            try:
                self.tls_server = await self.loop.create_server(
                    lambda: StreamConnection(self, "TLS", tls=TlsSession(server, server_side=True)),
                    host=host, port=tls_port, reuse_address=True,
                )  # fmt: skip
            except OSError as error:
                raise BindFailed(error, "TLS", (host, tls_port)) from error
            self.tls_address = (host, self.tls_server.sockets[0].getsockname()[1])
        wanted = {t.upper() for t in transports}
        try:
            for _ in range(20):
                try:
                    bound = await self._bind(host, port, wanted)
                except BindFailed:
                    if port != 0:
                        raise
                    continue  # the UDP port was free but its TCP twin was not: try another
                self.address = bound
                self._schedule_idle_check()
                log.info(
                    "sip.transport_started",
                    address=bound, transports=sorted(wanted), tls_address=self.tls_address,
                )  # fmt: skip
                return bound
            raise BindFailed(OSError(errno.EADDRINUSE, "no port free for both UDP and TCP"), "UDP", (host, 0))
        except BindFailed:
            if self.tls_server is not None:
                self.tls_server.close()
                self.tls_server = None
            raise

    async def _bind(self, host: str, port: int, wanted: set[str]) -> Address:
        udp: asyncio.DatagramTransport | None = None
        transport = "UDP"
        try:
            if "UDP" in wanted:
                udp, _ = await self.loop.create_datagram_endpoint(
                    lambda: _UdpProtocol(self), local_addr=(host, port), reuse_port=False
                )
                port = udp.get_extra_info("sockname")[1]
                _enlarge_buffers(udp.get_extra_info("socket"))
            if "TCP" in wanted:
                transport = "TCP"
                self.tcp_server = await self.loop.create_server(
                    lambda: StreamConnection(self, "TCP"), host=host, port=port, reuse_address=True
                )
                port = self.tcp_server.sockets[0].getsockname()[1]
        except OSError as error:
            if udp is not None:
                udp.close()
            raise BindFailed(error, transport, (host, port)) from error
        self.udp = udp
        return host, port

    # -- delivery ------------------------------------------------------------------------------------------
    def deliver(self, message: Request | Response, source: Address, transport: str) -> None:
        try:
            self.on_message(message, source, transport)
        except Exception:  # a bug above must not kill the socket's reader
            log.exception("sip.message_handler_failed", source=source)

    # -- sending -------------------------------------------------------------------------------------------
    def send(self, out: Outgoing) -> None:
        if out.transport == "UDP":
            if self.udp is None:
                self.on_send_error(out, OSError("UDP transport not started"))
                return
            self.udp.sendto(out.data, out.destination)
            return
        if out.transport not in STREAM_TRANSPORTS:
            self.on_send_error(out, OSError(f"unknown transport {out.transport}"))
            return
        key = (out.transport, out.destination)
        connection = self.connections.get(key)
        if connection is not None:
            connection.write(out.data)
            return
        pending = self._connecting.get(key)
        if pending is not None:
            if len(pending) < self.max_pending_writes:
                pending.append(out)
            return
        self._connecting[key] = [out]
        self.spawn(self._connect(out.destination, out.transport))

    def name_destination(self, destination: Address, server_name: str) -> None:
        """The host name a TLS connection to `destination` must be verified against (and sent as SNI)."""
        if len(self.server_names) >= MAX_SERVER_NAMES and destination not in self.server_names:
            self.server_names.pop(next(iter(self.server_names)))
        self.server_names[destination] = server_name

    async def _connect(self, destination: Address, transport_name: str) -> None:
        key = (transport_name, destination)
        server_name = self.server_names.get(destination, destination[0])
        failure: ConnectFailed | None = None
        try:
            if len(self.connections) >= self.max_connections:
                raise OSError("TCP connection limit reached")
            tls: TlsSession | None = None
            if transport_name == "TLS":
                client = self.tls.client if self.tls is not None else ssl.create_default_context()
                tls = TlsSession(client, server_side=False, server_name=server_name)
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await self.loop.create_connection(
                    lambda: StreamConnection(self, transport_name, outbound=destination, tls=tls),
                    host=destination[0],
                    port=destination[1],
                    family=socket.AF_INET6 if ":" in destination[0] else socket.AF_INET,
                )
            await connection.ready  # the TLS handshake, within its own deadline (at once for TCP)
        except ConnectFailed as error:  # the handshake failed or timed out: `ready` says why
            failure = error
        except (OSError, TimeoutError, ValueError) as error:  # refused, unreachable, or no answer
            failure = ConnectFailed(transport_name, destination, str(error) or type(error).__name__)
        if failure is not None:
            for out in self._connecting.pop(key, []):
                self.on_send_error(out, failure)
            event = "sip.tls_connect_failed" if transport_name == "TLS" else "sip.tcp_connect_failed"
            log.info(event, destination=destination, server_name=server_name, error=failure.reason)
            return
        for out in self._connecting.pop(key, []):
            connection.write(out.data)

    def keep_alive(self, destination: Address, transport_name: str) -> bool:
        """Ping our connection to `destination` (RFC 5626 §4.4.1); False when there is none to ping."""
        connection = self.connections.get((transport_name, destination))
        if connection is None or connection.outbound_key is None:
            return False
        connection.ping()
        return True

    # -- connection bookkeeping ----------------------------------------------------------------------------
    def register_connection(self, connection: StreamConnection) -> bool:
        assert connection.peer is not None
        if connection.outbound_key is None:
            source = connection.peer[0]
            if len(self.connections) >= self.max_connections:
                self._refusals.refused(source, "total", self.max_connections, self.loop.time())
                return False
            count = self._per_source.get(source, 0)
            if count >= self.max_connections_per_source:
                self._refusals.refused(
                    source, "per_source", self.max_connections_per_source, self.loop.time()
                )
                return False
            self._per_source[source] = count + 1
            connection.counted_source = source
        self.connections[(connection.name, connection.peer)] = connection
        if connection.outbound_key is not None and connection.outbound_key != connection.peer:
            self.connections[(connection.name, connection.outbound_key)] = connection
        return True

    def unregister_connection(self, connection: StreamConnection) -> None:
        for key in [k for k, c in self.connections.items() if c is connection]:
            del self.connections[key]
        source, connection.counted_source = connection.counted_source, None
        if source is not None:
            left = self._per_source.pop(source) - 1
            if left:
                self._per_source[source] = left

    def _schedule_idle_check(self) -> None:
        interval = max(1.0, min(30.0, self.idle_timeout / 4))
        self._idle_handle = self.loop.call_later(interval, self._close_idle)

    def _close_idle(self) -> None:
        cutoff = self.loop.time() - self.idle_timeout
        for connection in {id(c): c for c in self.connections.values()}.values():
            if connection.last_activity < cutoff:
                log.debug("sip.tcp_idle_close", peer=connection.peer)
                connection.close()
        self._schedule_idle_check()

    async def close(self) -> None:
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self.udp is not None:
            self.udp.close()
        for server in (self.tcp_server, self.tls_server):
            if server is not None:
                server.close()
        connections = {id(c): c for c in self.connections.values()}.values()
        for connection in connections:
            connection.close()
        for connection in connections:
            await connection.closed
        for server in (self.tcp_server, self.tls_server):
            if server is not None:
                await server.wait_closed()
