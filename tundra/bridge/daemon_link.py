"""The bridge's link to the daemon: one shared IPC client, kept alive with jittered backoff.

The bridge never owns state. It holds one long-lived IPC connection for REST calls and the
daemon's event stream (fanned out to ``/ws/events`` subscribers), reconnects with jittered
exponential backoff when the daemon stops or restarts, and meanwhile answers every call
with :class:`~tundra.ipc.errors.DaemonNotRunning` (``daemon.unavailable``, HTTP 503).
Terminal WebSockets open their own connection per attach (see :mod:`tundra.bridge.terminal_ws`)
so that one slow browser can never stall the shared connection.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import trio

from tundra.bridge.metrics import BridgeMetrics
from tundra.errors import TundraError
from tundra.ipc.client import Client, open_client
from tundra.ipc.errors import DaemonNotRunning, IpcError

__all__ = ["DaemonLink", "is_connection_error", "connection_failure", "EVENT_BUFFER"]

log = logging.getLogger("tundra.bridge.ipc")

T = TypeVar("T")

EVENT_BUFFER = 256
"""Events queued per /ws/events subscriber before it is dropped as lagged."""

_CONNECTION_CODES = frozenset(
    {"daemon.unavailable", "daemon.not_responding", "ipc.connection_lost", "ipc.error", "ipc.permission_denied",
     "ipc.protocol_mismatch"}
)


def connection_failure(exc: BaseException) -> BaseException | None:
    """The error inside ``exc`` (possibly an exception group) that ended a connection.

    None when ``exc`` holds something else (a bug or a cancellation) that must propagate.
    """
    if isinstance(exc, BaseExceptionGroup):
        found: BaseException | None = None
        for e in exc.exceptions:
            leaf = connection_failure(e)
            if leaf is None:
                return None
            found = found or leaf
        return found
    if isinstance(exc, (TundraError, OSError)):
        return exc
    return None


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` means "the daemon is not reachable", not "the daemon said no"."""
    return isinstance(exc, TundraError) and exc.code in _CONNECTION_CODES or isinstance(exc, OSError)


class DaemonLink:
    """Keeps one IPC client connected; hands it out for calls; fans out daemon events."""

    def __init__(
        self,
        socket_path: Path | None,
        metrics: BridgeMetrics,
        *,
        call_timeout: float = 10.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
    ) -> None:
        self.socket_path = socket_path
        self.metrics = metrics
        self.call_timeout = call_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._client: Client | None = None
        self._up = trio.Event()
        self.state = "connecting"
        self.last_error: str | None = None
        self.connected_since: float | None = None
        self.daemon_version: str | None = None
        self.generation = 0
        self._subscribers: set[trio.MemorySendChannel[dict[str, Any]]] = set()
        self._lost_callbacks: list[trio.Event] = []

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, serve, reconnect -- forever. Ready at once (calls fail fast while down)."""
        task_status.started()
        attempt = 0
        while True:
            try:
                async with open_client(self.socket_path) as client:
                    await self._serve(client)
                reason = "daemon closed the connection"
            except (TundraError, OSError, BaseExceptionGroup) as exc:
                leaf = connection_failure(exc)
                if leaf is None:
                    raise
                reason = leaf.message if isinstance(leaf, TundraError) else str(leaf)
            was_up = self._client is not None
            self._lost()
            self.last_error = reason
            if was_up:
                log.warning("lost the daemon connection: %s", reason)
                attempt = 0
            attempt += 1
            self.metrics.ipc_reconnects += 1
            delay = min(self.backoff_max, self.backoff_initial * 2 ** min(attempt - 1, 16))
            delay *= random.uniform(0.5, 1.0)  # full jitter would allow 0; keep a floor
            log.info(
                "daemon unavailable (%s); reconnect attempt %d in %.2fs",
                reason,
                attempt,
                delay,
                extra={"fields": {"attempt": attempt, "delay_secs": round(delay, 3)}},
            )
            await trio.sleep(delay)

    async def _serve(self, client: Client) -> None:
        hello = client.server_hello
        self.daemon_version = hello.agent if hello is not None else None
        self._client = client
        self.generation += 1
        self.state = "up"
        self.last_error = None
        self.connected_since = time.time()
        self.metrics.daemon_up = 1
        self._up.set()
        log.info("connected to the daemon", extra={"fields": {"socket": str(client.path)}})
        while True:
            try:
                async with client.stream("events.subscribe", {"topics": []}) as events:
                    async for ev in events:
                        if isinstance(ev, dict):
                            self._fan_out(ev)
                return  # the stream ended: the daemon is going away
            except TundraError as exc:
                if is_connection_error(exc):
                    raise
                if exc.code != "ipc.lagged":
                    break
                log.warning("daemon event stream lagged; subscribing again")
        # No event stream on this daemon: watch the connection with a cheap periodic call.
        log.warning("daemon has no event stream; polling it instead")
        while True:
            await trio.sleep(2.0)
            await client.call("ping", {}, timeout=self.call_timeout)

    def _lost(self) -> None:
        self._client = None
        self.state = "down"
        self.connected_since = None
        self.metrics.daemon_up = 0
        self._up = trio.Event()
        for send in list(self._subscribers):
            send.close()
        self._subscribers.clear()

    def _fan_out(self, ev: dict[str, Any]) -> None:
        for send in list(self._subscribers):
            try:
                send.send_nowait(ev)
            except trio.WouldBlock:
                # A subscriber that cannot keep up is dropped, never allowed to grow memory.
                send.close()
                self._subscribers.discard(send)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._subscribers.discard(send)

    def client(self) -> Client:
        """The live client, or :class:`DaemonNotRunning` (503 ``daemon.unavailable``)."""
        if self._client is None:
            raise DaemonNotRunning(
                f"daemon unavailable ({self.last_error or 'connecting'}); the bridge is reconnecting"
            )
        return self._client

    async def wait_connected(self, timeout: float) -> bool:
        with trio.move_on_after(timeout):
            await self._up.wait()
            return True
        return False

    async def call(self, method: str, params: Any = None, *, result_type: Any = Any, timeout: float | None = None) -> Any:
        """One unary call with a deadline; connection failures become ``daemon.unavailable``."""
        client = self.client()
        try:
            return await client.call(method, params, result_type=result_type, timeout=timeout or self.call_timeout)
        except IpcError as exc:
            if exc.code in ("ipc.connection_lost", "ipc.error"):
                raise DaemonNotRunning(f"daemon unavailable ({exc.message}); the bridge is reconnecting") from exc
            raise

    @asynccontextmanager
    async def subscribe_events(self) -> AsyncIterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        """Receive daemon events; the channel ends when the daemon is lost or we lag."""
        self.client()  # raise now if the daemon is down
        send, recv = trio.open_memory_channel[dict[str, Any]](EVENT_BUFFER)
        self._subscribers.add(send)
        try:
            async with recv:
                yield recv
        finally:
            self._subscribers.discard(send)
            send.close()

    @asynccontextmanager
    async def dedicated(self) -> AsyncIterator[Client]:
        """A fresh connection for one long stream (terminal attach)."""
        self.client()
        async with open_client(self.socket_path) as c:
            yield c
