"""Small in-memory fakes of the terminal launcher for scheduler tests (exits on command)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

__all__ = ["FakeProcess", "FakeLauncher"]


class FakeProcess:
    def __init__(self, pid: str, argv: Sequence[str], cwd: str, env: Mapping[str, str]) -> None:
        self.id = pid
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env)
        self.last_output_at = trio.current_time()
        self.output = bytearray()
        self.exit_status: tuple[int | None, int | None] | None = None
        self._exited = trio.Event()
        self.written = bytearray()
        self.suspended = False

    @property
    def offset(self) -> int:
        return len(self.output)

    def emit(self, data: bytes) -> None:
        self.output += data
        self.last_output_at = trio.current_time()

    def exit(self, code: int | None = 0, sig: int | None = None) -> None:
        if self.exit_status is None:
            self.exit_status = (code, sig)
            self._exited.set()

    def read(self, since: int | None = None) -> tuple[int, bytes, int]:
        start = since or 0
        return start, bytes(self.output[start:]), 0

    @asynccontextmanager
    async def subscribe(self, since: int | None = None) -> AsyncIterator[Any]:
        async def items() -> AsyncIterator[Any]:
            sent = since or 0
            while True:
                if len(self.output) > sent:
                    yield _Out(bytes(self.output[sent:]))
                    sent = len(self.output)
                if self._exited.is_set():
                    return
                await trio.sleep(0.01)

        yield items()

    async def write(self, data: bytes) -> None:
        self.written += data

    async def wait_exit(self) -> tuple[int | None, int | None]:
        await self._exited.wait()
        assert self.exit_status is not None
        return self.exit_status

    async def kill(self) -> None:
        self.exit(None, 9)

    def suspend(self) -> None:
        self.suspended = True

    def resume(self) -> None:
        self.suspended = False


class _Out:
    def __init__(self, data: bytes) -> None:
        self.data = data


class FakeLauncher:
    """``slots`` = the PTY pool size; processes live until the test calls ``exit``."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.procs: list[FakeProcess] = []
        self.peak = 0

    @property
    def alive(self) -> list[FakeProcess]:
        return [p for p in self.procs if p.exit_status is None]

    def free_slots(self) -> int:
        return self.slots - len(self.alive)

    async def launch(
        self, argv: Sequence[str], *, cwd: str, env: Mapping[str, str], name: str
    ) -> FakeProcess:
        assert self.free_slots() > 0, "launched beyond the PTY pool"
        p = FakeProcess(f"term-{len(self.procs)}", argv, cwd, env)
        self.procs.append(p)
        self.peak = max(self.peak, len(self.alive))
        return p

    def is_alive(self, terminal_id: str) -> bool:
        return any(p.id == terminal_id and p.exit_status is None for p in self.procs)

    async def forget(self, terminal_id: str) -> None:
        pass
