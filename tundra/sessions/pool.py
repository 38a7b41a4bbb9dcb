"""PtyPool: the bounded set of live PTY children (capacity, spawn off-loop, release, counters)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from functools import partial
from typing import final

import trio

from tundra.sessions.errors import PtyAtCapacity, PtyHandleNotFound, PtySpawnFailed
from tundra.sessions.process import ProcTableReader, PtyProcess, spawn_pty

__all__ = ["PtyPool"]

log = logging.getLogger("tundra.sessions.pool")


@final
class PtyPool:
    """At most ``max_ptys`` live PTY children.

    A slot is taken when a spawn starts and given back by :meth:`release` (idempotent).
    With ``queue_when_full`` a spawn at capacity waits up to ``queue_timeout`` seconds for a
    slot instead of failing at once with :class:`PtyAtCapacity`.
    """

    def __init__(
        self,
        max_ptys: int,
        *,
        queue_when_full: bool = False,
        queue_timeout: float = 30.0,
        spawn_threads: int = 4,
    ) -> None:
        if max_ptys < 1:
            raise ValueError("max_ptys must be >= 1")
        self.max_ptys = max_ptys
        self.queue_when_full = queue_when_full
        self.queue_timeout = queue_timeout
        self._handles: dict[str, PtyProcess] = {}
        self._reserved = 0
        self._slot_freed = trio.Event()
        self._limiter = trio.CapacityLimiter(spawn_threads)
        self._table_reader = ProcTableReader()
        self._high_usage = False
        self.spawned = 0
        self.released = 0
        self.failed = 0

    @property
    def active_count(self) -> int:
        """Slots in use: live handles plus spawns in progress."""
        return len(self._handles) + self._reserved

    def handles(self) -> list[PtyProcess]:
        return list(self._handles.values())

    def _check_usage(self) -> None:
        high = self.active_count * 5 > self.max_ptys * 4
        if high and not self._high_usage:
            log.warning(
                "PTY pool usage high: %.1f%% (%d of %d)",
                100.0 * self.active_count / self.max_ptys,
                self.active_count,
                self.max_ptys,
                extra={"fields": {"active_count": self.active_count, "max_ptys": self.max_ptys}},
            )
        self._high_usage = high

    async def _reserve(self) -> None:
        if self.active_count < self.max_ptys:
            self._reserved += 1
            return
        if not self.queue_when_full:
            log.warning("pty pool is at capacity (%d)", self.max_ptys)
            raise PtyAtCapacity(self.max_ptys)
        with trio.move_on_after(self.queue_timeout):
            while self.active_count >= self.max_ptys:
                await self._slot_freed.wait()
            self._reserved += 1
            return
        log.warning(
            "pty pool is at capacity (%d) after waiting %.1fs", self.max_ptys, self.queue_timeout
        )
        raise PtyAtCapacity(self.max_ptys)

    def _wake_waiters(self) -> None:
        ev, self._slot_freed = self._slot_freed, trio.Event()
        ev.set()

    async def spawn(
        self,
        argv: Sequence[str],
        *,
        handle_id: str | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        rows: int = 24,
        cols: int = 80,
    ) -> PtyProcess:
        """Spawn ``argv`` on a new PTY in a worker thread; the handle is registered on return.

        Raises :class:`PtyAtCapacity` or :class:`PtySpawnFailed`.
        """
        await self._reserve()
        hid = handle_id or str(uuid.uuid4())
        try:
            proc = await trio.to_thread.run_sync(
                partial(spawn_pty, argv, terminal_id=hid, cwd=cwd, env=env, rows=rows, cols=cols),
                limiter=self._limiter,
            )
        except BaseException as e:
            self._reserved -= 1
            self.failed += 1
            self._wake_waiters()
            if isinstance(e, PtySpawnFailed):
                log.warning("%s", e, extra={"fields": {"argv": list(argv), "cwd": cwd, "id": hid}})
            raise
        self._reserved -= 1
        proc.table_reader = self._table_reader
        self._handles[hid] = proc
        self.spawned += 1
        log.debug(
            "spawned PTY: %s",
            " ".join(argv),
            extra={"fields": {"id": hid, "pid": proc.pid, "active_count": self.active_count}},
        )
        self._check_usage()
        return proc

    def get(self, handle_id: str) -> PtyProcess:
        try:
            return self._handles[handle_id]
        except KeyError:
            raise PtyHandleNotFound(handle_id) from None

    def release(self, handle_id: str) -> bool:
        """Give the slot back. Idempotent: False when the handle was not (or no longer) held."""
        proc = self._handles.pop(handle_id, None)
        if proc is None:
            return False
        self.released += 1
        proc.close_master()
        log.debug(
            "released PTY",
            extra={"fields": {"id": handle_id, "active_count": self.active_count}},
        )
        self._check_usage()
        self._wake_waiters()
        return True

    async def kill(self, handle_id: str, *, grace: float = 2.0) -> tuple[int | None, int | None]:
        """Tear the child's session down and release its slot. Raises PtyHandleNotFound."""
        proc = self.get(handle_id)
        try:
            with trio.CancelScope(shield=True):
                await proc.terminate(grace)
        finally:
            self.release(handle_id)
        return proc.exit_status

    def stats(self) -> dict[str, int]:
        return {
            "active_count": self.active_count,
            "max_ptys": self.max_ptys,
            "spawned": self.spawned,
            "released": self.released,
            "failed": self.failed,
        }
