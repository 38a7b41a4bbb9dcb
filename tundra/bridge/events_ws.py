"""``/ws/events``: a JSON text stream of daemon events (terminals, tasks) for the page.

Each frame is ``{"type":"event","topic":...,"seq":...,"ts":...,"data":{...}}``. A client
may send ``{"type":"ping"}`` (answered with ``pong``). When the daemon goes away the socket
closes with 1012; a client that cannot keep up is closed with 1013.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from tundra.bridge.daemon_link import DaemonLink
from tundra.bridge.metrics import BridgeMetrics
from tundra.bridge.ws_session import (
    CLOSE_SERVICE_RESTART,
    CLOSE_TRY_AGAIN_LATER,
    CloseRequest,
    close_websocket,
    heartbeat,
)

__all__ = ["serve_events_socket"]

log = logging.getLogger("tundra.bridge.events_ws")
_json = msgspec.json.Encoder()


async def serve_events_socket(
    ws: WebSocketConnection,
    link: DaemonLink,
    metrics: BridgeMetrics,
    *,
    heartbeat_interval: float,
    heartbeat_timeout: float,
    topics: tuple[str, ...] = (),
) -> None:
    code, reason = CLOSE_SERVICE_RESTART, "daemon unavailable; reconnect shortly"
    try:
        async with link.subscribe_events() as events, trio.open_nursery() as nursery:
            nursery.start_soon(heartbeat, ws, heartbeat_interval, heartbeat_timeout, log, "events")
            nursery.start_soon(_answer_pings, ws)
            await ws.send_message(_json.encode({"type": "hello", "daemon": link.daemon_version}).decode())
            async for ev in events:
                topic = str(ev.get("topic", ""))
                if topics and not topic.startswith(topics):
                    continue
                await ws.send_message(_json.encode({"type": "event", **ev}).decode())
            # The channel ended: daemon lost (link closed it) or this client lagged.
            if link.connected:
                code, reason = CLOSE_TRY_AGAIN_LATER, "event stream lagged; reconnect"
            raise CloseRequest(code, reason)
    except BaseException as exc:
        leaves = _leaves(exc)
        if any(isinstance(e, ConnectionClosed) for e in leaves):
            metrics.ws_closed_with("events", 1006)
            return
        req = next((e for e in leaves if isinstance(e, CloseRequest)), None)
        if req is None:
            from tundra.errors import TundraError

            if not any(isinstance(e, TundraError) for e in leaves):
                raise
        else:
            code, reason = req.code, req.reason
    metrics.ws_closed_with("events", code)
    await close_websocket(ws, code, reason)


async def _answer_pings(ws: WebSocketConnection) -> None:
    while True:
        msg = await ws.get_message()
        if isinstance(msg, str):
            try:
                parsed: Any = msgspec.json.decode(msg)
            except msgspec.DecodeError:
                continue
            if isinstance(parsed, dict) and parsed.get("type") == "ping":
                await ws.send_message('{"type":"pong"}')


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for e in exc.exceptions:
            out.extend(_leaves(e))
        return out
    return [exc]
