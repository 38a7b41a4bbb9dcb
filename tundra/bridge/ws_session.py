"""Pieces every bridge WebSocket shares: the bounded send queue, heartbeat and closing.

The send queue is bounded in bytes: producers wait for room (backpressure towards the
daemon, which drops a subscriber that lags) but never longer than ``stall_timeout``; a
client that stays that far behind is closed with a reason saying how to resume. Memory per
socket therefore never exceeds the queue bound plus one message.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import Any

import msgspec
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from tundra.telemetry import TRACE

__all__ = [
    "SendQueue",
    "QueueStalled",
    "CloseRequest",
    "heartbeat",
    "close_websocket",
    "CLOSE_NORMAL",
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY",
    "CLOSE_SERVICE_RESTART",
    "CLOSE_TRY_AGAIN_LATER",
    "MAX_FRAME_BYTES",
]

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013

MAX_FRAME_BYTES = 256 * 1024
"""Output chunks queued back to back are coalesced into one binary frame up to this size:
WebSocket cost is per frame, not per byte."""

_json = msgspec.json.Encoder()


class QueueStalled(Exception):
    """The client did not drain the send queue within the stall timeout."""


@dataclass
class CloseRequest(Exception):
    """Raised inside a session to close the socket with a code and reason."""

    code: int
    reason: str


class SendQueue:
    """Ordered frames for one socket, bounded by ``max_bytes`` of binary payload."""

    def __init__(self, max_bytes: int, stall_timeout: float) -> None:
        self.max_bytes = max_bytes
        self.stall_timeout = stall_timeout
        self._items: collections.deque[str | bytes] = collections.deque()
        self.queued_bytes = 0
        self._changed = trio.Event()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def put_bytes(self, data: bytes) -> None:
        """Queue output; waits for room, raising :class:`QueueStalled` after the stall timeout."""
        if self.queued_bytes + len(data) > self.max_bytes and self.queued_bytes > 0:
            with trio.move_on_after(self.stall_timeout):
                while self.queued_bytes + len(data) > self.max_bytes and self.queued_bytes > 0:
                    await self._changed.wait()
            if self.queued_bytes + len(data) > self.max_bytes and self.queued_bytes > 0:
                raise QueueStalled()
        self._items.append(data)
        self.queued_bytes += len(data)
        self._wake()

    def put_control(self, message: dict[str, Any]) -> None:
        """Queue a JSON control message (small; never waits)."""
        self._items.append(_json.encode(message).decode())
        self._wake()

    async def get(self) -> str | bytes:
        """The next frame; adjacent binary chunks are joined (up to MAX_FRAME_BYTES)."""
        while not self._items:
            await self._changed.wait()
        first = self._items.popleft()
        if isinstance(first, str):
            self._wake()
            return first
        parts = [first]
        size = len(first)
        while self._items and isinstance(self._items[0], bytes) and size + len(self._items[0]) <= MAX_FRAME_BYTES:
            nxt = self._items.popleft()
            assert isinstance(nxt, bytes)
            parts.append(nxt)
            size += len(nxt)
        self.queued_bytes -= size
        self._wake()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def __len__(self) -> int:
        return len(self._items)


async def heartbeat(
    ws: WebSocketConnection, interval: float, timeout: float, log: logging.Logger, label: str
) -> None:
    """Ping every ``interval``; raise :class:`CloseRequest` when a pong is ``timeout`` late."""
    frame = 0
    while True:
        await trio.sleep(interval)
        frame += 1
        log.log(TRACE, "Sending heartbeat ping (frame %d)", frame, extra={"fields": {"ws": label}})
        with trio.move_on_after(timeout) as cs:
            await ws.ping()
        if cs.cancelled_caught:
            log.warning("Pong timeout after %g seconds", timeout, extra={"fields": {"ws": label}})
            log.error("Heartbeat failure detected, closing connection", extra={"fields": {"ws": label}})
            raise CloseRequest(CLOSE_GOING_AWAY, "heartbeat timeout: no pong")
        log.log(TRACE, "Received pong response (frame %d)", frame, extra={"fields": {"ws": label}})


async def close_websocket(ws: WebSocketConnection, code: int, reason: str, timeout: float = 2.0) -> None:
    """Close politely, but never wait more than ``timeout`` on a client that stopped reading."""
    with trio.CancelScope(shield=True):
        with trio.move_on_after(timeout):
            try:
                await ws.aclose(code, reason[:120])
            except ConnectionClosed:
                pass
        # aclose() closes the underlying stream in its finally block even when cut short.
