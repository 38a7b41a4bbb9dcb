"""``/ws/terminal/{id}``: one browser (or tool) attached to one daemon terminal.

Server -> client: binary frames carry terminal output bytes exactly as produced; text
frames carry JSON control messages: ``offset`` (absolute offset of the next byte, sent
before the first output, after a gap and every second while output flows), ``status``,
``gap``, ``exit``, ``pong``. Client -> server: binary frames are input bytes; text JSON
``input``/``resize``/``ping`` (and ``attach`` with ``since`` as the first message when the
URL has no ``since``). A client resumes without loss or duplicates by reconnecting with
``since=<offset of the next byte it needs>``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from tundra.bridge.daemon_link import DaemonLink, is_connection_error
from tundra.bridge.metrics import BridgeMetrics
from tundra.bridge.ws_session import (
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_SERVICE_RESTART,
    CLOSE_TRY_AGAIN_LATER,
    CloseRequest,
    QueueStalled,
    SendQueue,
    close_websocket,
    heartbeat,
)
from tundra.errors import TundraError

__all__ = ["TerminalSocket", "TerminalSocketSettings", "dead_message"]

log = logging.getLogger("tundra.bridge.terminal_ws")

FIRST_MESSAGE_WAIT = 0.2
"""Without ``since`` in the URL, how long to wait for an ``attach`` first message."""
OFFSET_INTERVAL = 1.0


class TerminalSocketSettings(msgspec.Struct, frozen=True, kw_only=True):
    heartbeat_interval: float = 30.0
    heartbeat_timeout: float = 10.0
    idle_timeout: float = 300.0
    send_queue_bytes: int = 4 * 1024 * 1024


class _ClientMessage(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    type: str
    data: str | None = None
    rows: int | None = None
    cols: int | None = None
    since: int | None = None


_msg_decoder = msgspec.json.Decoder(_ClientMessage)


def dead_message(info: dict[str, Any], grace: float | None = None) -> str:
    """The 410 text for a dead terminal: grace expiry or its exit status."""
    code, sig = info.get("exit_code"), info.get("exit_signal")
    if info.get("exit_reason") in ("grace_expired", "reconnect grace expired"):
        return "terminal is dead (grace period expired)"
    if code is not None:
        return f"terminal is dead (exit code {code})"
    if sig is not None:
        return f"terminal is dead (killed by signal {sig})"
    return "terminal is dead"


def _title(status: str) -> str:
    return status[:1].upper() + status[1:]


class TerminalSocket:
    """Relays one accepted WebSocket to a terminal's attach stream until either side ends."""

    def __init__(
        self,
        ws: WebSocketConnection,
        link: DaemonLink,
        metrics: BridgeMetrics,
        info: dict[str, Any],
        since: int | None,
        settings: TerminalSocketSettings,
    ) -> None:
        self.ws = ws
        self.link = link
        self.metrics = metrics
        self.info = info
        self.terminal_id: str = info["id"]
        self.since = since
        self.settings = settings
        self.queue = SendQueue(settings.send_queue_bytes, settings.heartbeat_timeout)
        self.next_offset: int | None = None
        """Absolute offset of the next output byte the client will receive."""
        self.queued_offset: int | None = None
        self.last_activity = trio.current_time()
        self.pending_first: str | bytes | None = None
        self._fields = {"terminal_id": self.terminal_id}

    async def run(self) -> None:
        code, reason = CLOSE_NORMAL, "terminal session ended"
        try:
            if self.since is None:
                await self._first_message()
            await self._relay()
        except CloseRequest as req:
            code, reason = req.code, req.reason
        except (ConnectionClosed, _ClientGone):
            log.warning("WebSocket disconnected for terminal %s", self.terminal_id, extra={"fields": self._fields})
            self.metrics.ws_closed_with("terminal", 1006 if self.ws.closed is None else self.ws.closed.code)
            return
        log.info(
            "closing WebSocket for terminal %s: %s (%d)", self.terminal_id, reason, code, extra={"fields": self._fields}
        )
        self.metrics.ws_closed_with("terminal", code)
        await close_websocket(self.ws, code, reason)

    async def _first_message(self) -> None:
        with trio.move_on_after(FIRST_MESSAGE_WAIT):
            msg = await self.ws.get_message()
            if isinstance(msg, str):
                try:
                    parsed = _msg_decoder.decode(msg)
                except msgspec.DecodeError:
                    parsed = None
                if parsed is not None and parsed.type in ("attach", "resume"):
                    self.since = parsed.since
                    return
            self.pending_first = msg

    async def _relay(self) -> None:
        try:
            async with self.link.dedicated() as client, trio.open_nursery() as nursery:
                nursery.start_soon(self._sender)
                nursery.start_soon(self._reader)
                nursery.start_soon(
                    heartbeat, self.ws, self.settings.heartbeat_interval, self.settings.heartbeat_timeout, log,
                    self.terminal_id,
                )
                if self.settings.idle_timeout > 0:
                    nursery.start_soon(self._idle_watch)
                nursery.start_soon(self._offset_ticker)
                self._log_attach()
                await self._pump(client)
                # The terminal ended: let the sender flush what is queued, then close.
                with trio.move_on_after(self.settings.heartbeat_timeout):
                    while len(self.queue):
                        await trio.sleep(0.01)
                raise CloseRequest(CLOSE_NORMAL, "terminal exited")
        except BaseException as exc:
            outcome = self._outcome(exc)
            if outcome is None:
                raise
            raise outcome from None

    def _outcome(self, exc: BaseException) -> BaseException | None:
        """Turn whatever ended the relay into one close decision (None = a bug: re-raise)."""
        leaves = list(_leaves(exc))
        if any(isinstance(e, trio.Cancelled) for e in leaves) and all(
            isinstance(e, trio.Cancelled) for e in leaves
        ):
            return None
        leaves = [e for e in leaves if not isinstance(e, trio.Cancelled)]
        for e in leaves:
            if isinstance(e, CloseRequest):
                return e
        for e in leaves:
            if isinstance(e, ConnectionClosed):
                return _ClientGone()
        for e in leaves:
            if isinstance(e, QueueStalled):
                return CloseRequest(
                    CLOSE_TRY_AGAIN_LATER, f"client too slow; resume with since={self._resume_offset()}"
                )
        for e in leaves:
            if isinstance(e, TundraError):
                return self._close_for_error(e)
        return None

    def _close_for_error(self, err: TundraError) -> CloseRequest:
        if is_connection_error(err):
            return CloseRequest(CLOSE_SERVICE_RESTART, "daemon unavailable; reconnect shortly")
        if err.code == "ipc.lagged":
            return CloseRequest(
                CLOSE_TRY_AGAIN_LATER, f"client too slow (lagged); resume with since={self._resume_offset()}"
            )
        if err.code == "terminal.dead":
            return CloseRequest(CLOSE_NORMAL, dead_message({**self.info, **err.details}))
        if err.code == "terminal.not_found":
            return CloseRequest(CLOSE_NORMAL, err.message)
        log.error("terminal socket failed: %s", err.message, extra={"fields": self._fields})
        return CloseRequest(CLOSE_INTERNAL, err.message[:100])

    def _resume_offset(self) -> int:
        return self.next_offset if self.next_offset is not None else (self.since or 0)

    def _log_attach(self) -> None:
        status = str(self.info.get("status", "active"))
        log.info("WebSocket connection established for terminal %s", self.terminal_id, extra={"fields": self._fields})
        if status == "disconnected" and self.info.get("disconnected_since") not in (None, self.info.get("created_at")):
            away = max(0.0, time.time() - float(self.info["disconnected_since"]))
            log.info("Client reconnected after %d seconds (within grace period)", round(away), extra={"fields": self._fields})
        if status != "active":
            log.debug("Status transition: %s → Active", _title(status), extra={"fields": self._fields})
        end = int(self.info.get("offset", 0))
        start = max(int(self.info.get("start_offset", 0)), self.since if self.since is not None else 0)
        log.debug("Replaying %d bytes of buffered output", max(0, end - start), extra={"fields": self._fields})
        log.debug("Spawned reader/writer/heartbeat tasks", extra={"fields": self._fields})

    async def _pump(self, client: Any) -> None:
        params: dict[str, Any] = {"id": self.terminal_id}
        if self.since is not None:
            params["since"] = self.since
            # State the resume point first, so a client can trust it before any output.
            self.queue.put_control({"type": "offset", "offset": self.since})
            self.queued_offset = self.since
        # A small buffer: a stalled browser must cost the bridge little (backpressure reaches
        # the daemon, which drops a lagging subscriber; the page resumes by offset).
        async with client.stream("term.attach", params, buffer=32) as stream:
            async for item in stream:
                kind = item.get("type") if isinstance(item, dict) else None
                if kind == "output":
                    data: bytes = item["data"]
                    start = int(item["offset"])
                    if self.queued_offset != start:
                        self.queue.put_control({"type": "offset", "offset": start})
                    self.queued_offset = start + len(data)
                    await self.queue.put_bytes(data)
                elif kind == "gap":
                    msg = {k: v for k, v in item.items() if not isinstance(v, bytes)}
                    self.queue.put_control(msg)
                    if "offset" in item:
                        self.queued_offset = int(item["offset"])
                        self.queue.put_control({"type": "offset", "offset": self.queued_offset})
                elif kind in ("status", "exit"):
                    self.queue.put_control({k: v for k, v in item.items() if not isinstance(v, bytes)})
        if isinstance(stream.result, dict):
            self.info = stream.result

    async def _sender(self) -> None:
        while True:
            frame = await self.queue.get()
            if isinstance(frame, bytes):
                await self.ws.send_message(frame)
                self.metrics.ws_bytes_out += len(frame)
                self.next_offset = (self.next_offset or 0) + len(frame)
                self.last_activity = trio.current_time()
            else:
                if frame.startswith('{"type":"offset"'):
                    self.next_offset = msgspec.json.decode(frame)["offset"]
                await self.ws.send_message(frame)

    async def _offset_ticker(self) -> None:
        """Re-state the offset every second while output flows (a cheap resume checkpoint)."""
        last: int | None = None
        while True:
            await trio.sleep(OFFSET_INTERVAL)
            if self.next_offset is not None and self.next_offset != last and not len(self.queue):
                last = self.next_offset
                self.queue.put_control({"type": "offset", "offset": last})

    async def _reader(self) -> None:
        if self.pending_first is not None:
            first, self.pending_first = self.pending_first, None
            await self._handle_client_message(first)
        while True:
            msg = await self.ws.get_message()
            await self._handle_client_message(msg)

    async def _handle_client_message(self, msg: str | bytes) -> None:
        self.last_activity = trio.current_time()
        if isinstance(msg, bytes):
            if msg:
                self.metrics.ws_bytes_in += len(msg)
                await self.link.call("term.input", {"id": self.terminal_id, "data": msg})
            return
        try:
            parsed = _msg_decoder.decode(msg)
        except msgspec.DecodeError:
            self.queue.put_control({"type": "error", "code": "ws.bad_message", "message": "expected a JSON object with a type"})
            return
        if parsed.type == "input" and parsed.data:
            data = parsed.data.encode()
            self.metrics.ws_bytes_in += len(data)
            await self.link.call("term.input", {"id": self.terminal_id, "data": data})
        elif parsed.type == "resize" and parsed.rows and parsed.cols:
            if not (1 <= parsed.rows <= 1000 and 1 <= parsed.cols <= 1000):
                self.queue.put_control({"type": "error", "code": "ws.bad_message", "message": "rows/cols must be 1-1000"})
                return
            await self.link.call("term.resize", {"id": self.terminal_id, "rows": parsed.rows, "cols": parsed.cols})
        elif parsed.type == "ping":
            self.queue.put_control({"type": "pong"})
        elif parsed.type in ("attach", "resume"):
            pass  # only meaningful as the first message
        else:
            self.queue.put_control({"type": "error", "code": "ws.bad_message", "message": f"unknown message type {parsed.type!r}"})

    async def _idle_watch(self) -> None:
        limit = self.settings.idle_timeout
        while True:
            remaining = self.last_activity + limit - trio.current_time()
            if remaining <= 0:
                log.debug("No data received for %g seconds", limit, extra={"fields": self._fields})
                log.info("Idle timeout reached, closing WebSocket", extra={"fields": self._fields})
                raise CloseRequest(CLOSE_NORMAL, "idle timeout")
            await trio.sleep(remaining)


class _ClientGone(Exception):
    """The client went away (TCP closed or close frame received)."""


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for e in exc.exceptions:
            out.extend(_leaves(e))
        return out
    return [exc]
