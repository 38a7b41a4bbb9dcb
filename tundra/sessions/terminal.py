"""Terminal: a PTY child plus metadata, a scrollback ring, attached subscribers and status.

Status machine (the seed's connection lifecycle): ``active`` while at least one client is
attached, ``disconnected`` (with a timestamp) when none is, ``dead`` once the child exited or
was killed (exit status and final scrollback stay until the terminal is removed). Ephemeral
terminals are killed ``reconnect_grace`` seconds after the last client leaves.

Every byte the child writes goes into the scrollback at its absolute offset and to each
subscriber's bounded queue; a subscriber that falls more than its limit behind is dropped
with :class:`~tundra.ipc.errors.Lagged` and never slows the PTY or the others.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, final

import trio

from tundra.ipc.errors import Lagged
from tundra.sessions.api import (
    AttachItem,
    ExitItem,
    GapItem,
    OutputItem,
    StatusItem,
    TerminalInfo,
    TerminalStatus,
)
from tundra.sessions.errors import TerminalDead
from tundra.sessions.process import PtyProcess
from tundra.sessions.scrollback import TerminalScrollback

__all__ = ["Terminal", "Subscription", "TerminalSettings", "MAX_ITEM_BYTES"]

log = logging.getLogger("tundra.sessions.terminal")

MAX_ITEM_BYTES: Final = 1024 * 1024
"""Largest output item a subscriber receives (queued chunks are merged up to this)."""
_REPLAY_CHUNK: Final = 256 * 1024


@final
class TerminalSettings:
    """The knobs a terminal reads from ``[terminals]``/``[daemon]`` (live-reloadable)."""

    __slots__ = (
        "scrollback_bytes",
        "reconnect_grace",
        "idle_timeout",
        "max_lifetime",
        "subscriber_queue_bytes",
        "kill_grace",
    )

    def __init__(
        self,
        *,
        scrollback_bytes: int = 1024 * 1024,
        reconnect_grace: float = 10.0,
        idle_timeout: float = 0.0,
        max_lifetime: float = 0.0,
        subscriber_queue_bytes: int = 4 * 1024 * 1024,
        kill_grace: float = 2.0,
    ) -> None:
        self.scrollback_bytes = scrollback_bytes
        self.reconnect_grace = reconnect_grace
        self.idle_timeout = idle_timeout
        self.max_lifetime = max_lifetime
        self.subscriber_queue_bytes = subscriber_queue_bytes
        self.kill_grace = kill_grace


@final
class Subscription:
    """One subscriber's view: replayed bytes, then live items, then ``exit``.

    Iterate it (``async for item in sub``) or call :meth:`receive`. Raises
    :class:`~tundra.ipc.errors.Lagged` once the subscriber has fallen too far behind.
    """

    def __init__(self, limit: int) -> None:
        self._items: deque[AttachItem] = deque()
        self._bytes = 0
        self._limit = limit
        self._wake = trio.Event()
        self.lagged = False
        self.finished = False
        self.last_offset = 0
        """Absolute offset just past the last output byte handed out."""

    def _push(self, item: AttachItem, nbytes: int = 0) -> bool:
        if self.lagged or self.finished:
            return False
        if nbytes and self._bytes + nbytes > self._limit:
            self.lagged = True
            self._items.clear()
            self._bytes = 0
            self._wake.set()
            return False
        self._items.append(item)
        self._bytes += nbytes
        self._wake.set()
        return True

    def _finish(self) -> None:
        self.finished = True
        self._wake.set()

    def _lagged_error(self) -> Lagged:
        err = Lagged(
            "terminal output subscriber fell behind and was dropped; "
            f"re-attach with since={self.last_offset}"
        )
        err.details["offset"] = self.last_offset
        return err

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    async def receive(self) -> AttachItem:
        """The next item (consecutive output merged); EndOfChannel after ``exit``/close."""
        if self._items:
            await trio.lowlevel.checkpoint()
        while not self._items:
            if self.lagged:
                raise self._lagged_error()
            if self.finished:
                raise trio.EndOfChannel
            self._wake = trio.Event()
            await self._wake.wait()
        if self.lagged:
            raise self._lagged_error()
        item = self._items.popleft()
        if isinstance(item, OutputItem):
            parts = [item.data]
            size = len(item.data)
            # Merge what is already queued: fewer, larger frames while output flows.
            while self._items and size < MAX_ITEM_BYTES:
                nxt = self._items[0]
                if not isinstance(nxt, OutputItem) or nxt.offset != item.offset + size:
                    break
                self._items.popleft()
                parts.append(nxt.data)
                size += len(nxt.data)
            self._bytes -= size
            if len(parts) > 1:
                item = OutputItem(offset=item.offset, data=b"".join(parts))
            self.last_offset = item.offset + size
        return item

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> AttachItem:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


EventHook = Callable[[str, "Terminal"], None]


@final
class Terminal:
    """A PTY child owned by the terminals service. Create via ``TerminalService.create``."""

    def __init__(
        self,
        proc: PtyProcess,
        *,
        name: str,
        persistent: bool,
        settings: TerminalSettings,
        on_event: EventHook | None = None,
    ) -> None:
        self.proc = proc
        self.id = proc.terminal_id
        self.name = name
        self.persistent = persistent
        self.settings = settings
        self.scrollback = TerminalScrollback(settings.scrollback_bytes)
        self.created_at = time.time()
        self.last_activity = self.created_at
        self._created_clock = trio.current_time()
        self.last_output_at = self._created_clock
        """trio clock time of the last output (or input)."""
        self._status: TerminalStatus = "disconnected"
        self.disconnected_since: float | None = self.created_at
        self._disconnected_clock: float = self._created_clock
        self._clients = 0
        self._subs: set[Subscription] = set()
        self._on_event = on_event
        self._state_changed = trio.Event()
        self._dead = trio.Event()
        self._cancel = trio.CancelScope()
        self.kill_reason: str | None = None
        self.exit_code: int | None = None
        self.exit_signal: int | None = None

    # -- state -----------------------------------------------------------------------
    @property
    def status(self) -> TerminalStatus:
        return self._status

    @property
    def is_dead(self) -> bool:
        return self._status == "dead"

    @property
    def clients(self) -> int:
        return self._clients

    @property
    def offset(self) -> int:
        return self.scrollback.end

    def info(self) -> TerminalInfo:
        return TerminalInfo(
            id=self.id,
            name=self.name,
            argv=list(self.proc.argv),
            cwd=self.proc.cwd,
            pid=self.proc.pid,
            pgid=self.proc.pgid,
            created_at=self.created_at,
            last_activity=self.last_activity,
            rows=self.proc.rows,
            cols=self.proc.cols,
            persistent=self.persistent,
            status=self._status,
            disconnected_since=self.disconnected_since,
            exit_code=self.exit_code,
            exit_signal=self.exit_signal,
            clients=self._clients,
            offset=self.scrollback.end,
            start_offset=self.scrollback.start,
            exit_reason=(self.kill_reason or "exited") if self._status == "dead" else None,
        )

    def _emit(self, topic: str) -> None:
        if self._on_event is not None:
            try:
                self._on_event(topic, self)
            except Exception:
                log.exception("terminal event hook failed", extra={"fields": {"id": self.id}})

    def _changed(self) -> None:
        ev, self._state_changed = self._state_changed, trio.Event()
        ev.set()

    def _status_item(self) -> StatusItem:
        return StatusItem(
            status=self._status, clients=self._clients, rows=self.proc.rows, cols=self.proc.cols
        )

    def _broadcast(self, item: AttachItem, nbytes: int = 0) -> None:
        for sub in list(self._subs):
            if not sub._push(item, nbytes):
                if sub.lagged:
                    log.warning(
                        "dropping a lagging terminal subscriber",
                        extra={"fields": {"id": self.id, "offset": sub.last_offset}},
                    )
                self._subs.discard(sub)

    def _set_clients(self, n: int) -> None:
        if self.is_dead:
            self._clients = n
            return
        before = self._status
        self._clients = n
        if n > 0:
            self._status = "active"
            self.disconnected_since = None
        elif before != "disconnected":
            self._status = "disconnected"
            self.disconnected_since = time.time()
            self._disconnected_clock = trio.current_time()
        if self._status != before:
            log.debug(
                "status transition: %s -> %s",
                before,
                self._status,
                extra={"fields": {"id": self.id, "clients": n}},
            )
            self._broadcast(self._status_item())
            self._emit("terminal.status")
        self._changed()

    # -- I/O -------------------------------------------------------------------------
    def _on_output(self, data: bytes) -> None:
        offset = self.scrollback.end
        self.scrollback.write(data)
        self.last_activity = time.time()
        self.last_output_at = trio.current_time()
        self._broadcast(OutputItem(offset=offset, data=data), len(data))

    async def write(self, data: bytes) -> None:
        """Send input to the child, in order. Raises TerminalDead once it is gone."""
        if self.is_dead or self.proc.exited:
            raise TerminalDead(self.exit_code, self.exit_signal)
        self.last_activity = time.time()
        self.last_output_at = trio.current_time()
        try:
            await self.proc.write(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise TerminalDead(self.exit_code, self.exit_signal) from None

    def resize(self, rows: int, cols: int) -> None:
        if self.is_dead:
            raise TerminalDead(self.exit_code, self.exit_signal)
        if (rows, cols) != (self.proc.rows, self.proc.cols):
            self.proc.resize(rows, cols)
            self._broadcast(self._status_item())
            self._emit("terminal.status")

    @asynccontextmanager
    async def subscribe(
        self, since: int | None = None, *, client: bool = False, limit: int | None = None
    ) -> AsyncIterator[Subscription]:
        """Replay the scrollback after ``since`` (or a gap notice) then stream live items.

        ``client=True`` counts the subscriber as an attached client (status machine).
        Works on a dead terminal too: replay, then the ``exit`` item.
        """
        start, data, lost = self.scrollback.read(since)
        base = self.settings.subscriber_queue_bytes if limit is None else limit
        sub = Subscription(base + len(data))
        sub.last_offset = start
        if lost:
            sub._push(GapItem(lost_bytes=lost, offset=start))
        for i in range(0, len(data), _REPLAY_CHUNK):
            chunk = data[i : i + _REPLAY_CHUNK]
            sub._push(OutputItem(offset=start + i, data=chunk), len(chunk))
        if self.is_dead:
            sub._push(self._exit_item())
            sub._finish()
        else:
            self._subs.add(sub)
            if client:
                self._set_clients(self._clients + 1)
        try:
            yield sub
        finally:
            self._subs.discard(sub)
            if client and not self.is_dead:
                self._set_clients(self._clients - 1)
            elif client:
                self._clients = max(0, self._clients - 1)

    def _exit_item(self) -> ExitItem:
        return ExitItem(
            exit_code=self.exit_code, exit_signal=self.exit_signal, offset=self.scrollback.end
        )

    # -- lifecycle -------------------------------------------------------------------
    async def wait_exit(self) -> tuple[int | None, int | None]:
        """Wait until the terminal is dead; ``(exit_code, exit_signal)``."""
        await self._dead.wait()
        return self.exit_code, self.exit_signal

    def request_kill(self, reason: str = "killed") -> None:
        """Start tearing the terminal down (see :meth:`run`); wait with :meth:`wait_exit`."""
        if self.kill_reason is None:
            self.kill_reason = reason
        self._cancel.cancel()

    async def _pump_output(self, done: trio.Event) -> None:
        try:
            while True:
                data = await self.proc.read()
                if not data:
                    return
                self._on_output(data)
        except (trio.ClosedResourceError, OSError):
            return
        finally:
            done.set()

    async def _watchdog(self) -> None:
        s = self.settings
        while True:
            deadlines: list[tuple[float, str]] = []
            if not self.persistent and self._clients == 0:
                deadlines.append(
                    (self._disconnected_clock + s.reconnect_grace, "reconnect grace expired")
                )
            if s.idle_timeout > 0:
                deadlines.append((self.last_output_at + s.idle_timeout, "idle timeout"))
            if s.max_lifetime > 0:
                deadlines.append((self._created_clock + s.max_lifetime, "max lifetime reached"))
            when, reason = min(deadlines) if deadlines else (math.inf, "")
            if trio.current_time() >= when:
                log.info(
                    "killing terminal: %s",
                    reason,
                    extra={"fields": {"id": self.id}},
                )
                self.request_kill(reason)
                return
            with trio.move_on_at(when):
                await self._state_changed.wait()

    async def run(
        self,
        *,
        on_dead: Callable[[Terminal], Any] | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Own the child until it exits or is killed; then tear its session down.

        Cancelling this task (kill, daemon shutdown) hangs up the process group, waits the
        kill grace, SIGKILLs what is left and reaps -- always, shielded and bounded.
        """
        pump_done = trio.Event()
        try:
            with self._cancel:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump_output, pump_done)
                    nursery.start_soon(self._watchdog)
                    task_status.started()
                    await self.proc.wait_exit()
                    # Drain what the child wrote before exiting. A background job may still
                    # hold the slave open (no EOF), so stop once output goes quiet.
                    give_up = trio.current_time() + 2.0
                    while not pump_done.is_set() and trio.current_time() < give_up:
                        seen = self.scrollback.end
                        with trio.move_on_after(0.2):
                            await pump_done.wait()
                        if self.scrollback.end == seen:
                            break
                    nursery.cancel_scope.cancel()
        finally:
            if self.kill_reason is None and not self.proc.exited:
                self.kill_reason = "shutdown"  # cancelled from outside: daemon stopping
            with trio.CancelScope(shield=True):
                with trio.move_on_after(self.settings.kill_grace + 10):
                    await self.proc.terminate(self.settings.kill_grace)
                if not self.proc.exited:
                    log.error("terminal child did not die", extra={"fields": {"id": self.id}})
                self._mark_dead()
                try:
                    if on_dead is not None:
                        await on_dead(self)
                finally:
                    self._dead.set()

    def _mark_dead(self) -> None:
        if self.is_dead:
            return
        self.exit_code, self.exit_signal = self.proc.exit_status
        self._status = "dead"
        self.disconnected_since = None
        log.info(
            "terminal exited",
            extra={
                "fields": {
                    "id": self.id,
                    "exit_code": self.exit_code,
                    "exit_signal": self.exit_signal,
                    "reason": self.kill_reason or "exited",
                }
            },
        )
        self._broadcast(self._status_item())
        self._broadcast(self._exit_item())
        for sub in list(self._subs):
            sub._finish()
        self._subs.clear()
        self._changed()
        self._emit("terminal.status")
        self._emit("terminal.exit")
