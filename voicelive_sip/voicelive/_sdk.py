"""Every reach into private internals of azure-ai-voicelive and aiohttp, in one place (`shape_problems`).

Pinned to the versions these were written against (`PINNED`). Each reach degrades to the public, slower path
when the shape differs at run time; `tests/voicelive/test_sdk_shape.py` fails loudly when it does, so an
upgrade is a decision rather than a silent slowdown or a leak.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, Final, Protocol, cast

import aiohttp

__all__ = [
    "PINNED",
    "FrameWriter",
    "close_abandoned_sessions",
    "frame_writer",
    "installed_versions",
    "shape_problems",
    "websocket_of",
]

PINNED: Final = {"azure-ai-voicelive": "1.3.1", "aiohttp": "3.14"}
WRITE_NOW_LIMIT: Final = 64 * 1024  # bytes in the transport's buffer above which appends await the drain
_FRAME_PARAMETERS: Final = ["message", "opcode", "rsv"]


def installed_versions() -> dict[str, str]:
    """The installed versions of the packages whose internals this module relies on."""
    return {name: version(name) for name in PINNED}


def websocket_of(conn: object) -> aiohttp.ClientWebSocketResponse | None:
    """The aiohttp WebSocket under the SDK's `VoiceLiveConnection` (its private `_connection`), or None."""
    ws = getattr(conn, "_connection", None)
    return ws if isinstance(ws, aiohttp.ClientWebSocketResponse) else None


class _WriteTransport(Protocol):
    # asyncio's and uvloop's stream transports alike (uvloop's are not asyncio.Transport instances).
    def is_closing(self) -> bool: ...
    def get_write_buffer_size(self) -> int: ...


class FrameWriter:
    """Writes one unfragmented, uncompressed text frame on an aiohttp client WebSocket, synchronously.

    aiohttp's own `send_str` is a coroutine only because of compression and flow control; for an
    uncompressed frame it ends in the writer's synchronous frame write, which masks and writes the frame in
    one `transport.write`. Whole frames keep it safe to mix with aiohttp's own sends on the same socket.
    """

    __slots__ = ("_transport", "_write")

    def __init__(self, write: Callable[[bytes, int, int], None], transport: _WriteTransport) -> None:
        self._write, self._transport = write, transport

    def backed_up(self) -> bool:
        """True when the kernel is not taking our data: leave the frame to the awaiting path, which drains."""
        transport = self._transport
        return transport.is_closing() or transport.get_write_buffer_size() > WRITE_NOW_LIMIT

    def __call__(self, message: bytes) -> None:
        self._write(message, aiohttp.WSMsgType.TEXT, 0)


def frame_writer(ws: object) -> FrameWriter | None:
    """The synchronous writer of an aiohttp client WebSocket, or None (then every send is awaited)."""
    if not isinstance(ws, aiohttp.ClientWebSocketResponse):
        return None
    writer = getattr(ws, "_writer", None)  # aiohttp._websocket.writer.WebSocketWriter
    write = getattr(writer, "_write_websocket_frame", None)
    transport = getattr(writer, "transport", None)
    if getattr(writer, "compress", 1) or not callable(write):
        return None
    try:  # the private method this relies on is (message, opcode, rsv) in aiohttp 3.14; else await
        parameters = list(inspect.signature(write).parameters)
    except (TypeError, ValueError):
        return None
    if parameters != _FRAME_PARAMETERS:
        return None
    if not all(callable(getattr(transport, name, None)) for name in ("is_closing", "get_write_buffer_size")):
        return None
    return FrameWriter(write, cast(_WriteTransport, transport))


async def close_abandoned_sessions(exc: BaseException) -> None:
    """Close the aiohttp session the SDK opened for a handshake our timeout cancelled.

    The SDK closes it only on aiohttp errors, so a cancelled handshake would leak it; the traceback of the
    cancellation still holds it as the local `session` of the SDK's `__aenter__`.
    """
    chained: list[BaseException] = [exc]
    if exc.__context__ is not None:
        chained.append(exc.__context__)
    for err in chained:
        tb = err.__traceback__
        while tb is not None:
            candidate = tb.tb_frame.f_locals.get("session")
            if isinstance(candidate, aiohttp.ClientSession) and not candidate.closed:
                await candidate.close()
            tb = tb.tb_next


def shape_problems() -> list[str]:
    """What no longer matches in the installed SDK and aiohttp (empty when every reach above still holds)."""
    from aiohttp._websocket.writer import WebSocketWriter  # private module: only looked at here
    from azure.ai.voicelive.aio import VoiceLiveConnection
    from azure.ai.voicelive.aio import _patch as sdk_patch

    problems: list[str] = []
    connection_init = list(inspect.signature(VoiceLiveConnection.__init__).parameters)
    if connection_init[1:] != ["client_session", "ws"]:
        problems.append(f"VoiceLiveConnection.__init__{connection_init[1:]} (expected client_session, ws)")
    if "self._connection" not in inspect.getsource(VoiceLiveConnection.__init__):
        problems.append("VoiceLiveConnection no longer keeps the WebSocket in `_connection`")
    manager = _connection_manager(sdk_patch)
    if manager is None or "session = aiohttp.ClientSession(" not in inspect.getsource(manager.__aenter__):
        problems.append("the SDK's connection manager no longer opens its aiohttp session as local `session`")
    write = getattr(WebSocketWriter, "_write_websocket_frame", None)
    if write is None:
        problems.append("aiohttp WebSocketWriter._write_websocket_frame is gone")
    elif list(inspect.signature(write).parameters)[1:] != _FRAME_PARAMETERS:
        problems.append(f"WebSocketWriter._write_websocket_frame{inspect.signature(write)} changed shape")
    writer_init = inspect.signature(WebSocketWriter.__init__).parameters
    if "compress" not in writer_init or "transport" not in writer_init:
        problems.append("WebSocketWriter.__init__ lost `transport` or `compress`")
    if "_writer" not in inspect.getsource(aiohttp.ClientWebSocketResponse.__init__):
        problems.append("ClientWebSocketResponse no longer keeps its writer in `_writer`")
    return problems


def _connection_manager(module: Any) -> Any:
    for value in vars(module).values():
        if (
            inspect.isclass(value)
            and "__aenter__" in vars(value)
            and "ws_connect" in inspect.getsource(value)
        ):
            return value
    return None
