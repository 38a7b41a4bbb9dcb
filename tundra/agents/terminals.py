"""Run agents in the daemon's persistent terminals (the tasks service's TerminalLauncher)."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from tundra.errors import TundraError

if TYPE_CHECKING:
    from tundra.daemon.app import Daemon
    from tundra.sessions.service import TerminalService
    from tundra.sessions.terminal import Terminal

__all__ = ["TerminalAgentProcess", "TerminalServiceLauncher", "DaemonTerminalLauncher"]


class TerminalAgentProcess:
    """An agent CLI running in a terminal: output, input, exit and kill of its group."""

    def __init__(self, service: TerminalService, term: Terminal) -> None:
        self._service = service
        self.term = term

    @property
    def id(self) -> str:
        return self.term.id

    @property
    def pid(self) -> int:
        return int(self.term.proc.pid)

    @property
    def last_output_at(self) -> float:
        return self.term.last_output_at

    @property
    def offset(self) -> int:
        return self.term.offset

    def read(self, since: int | None = None) -> tuple[int, bytes, int]:
        start, data, lost = self.term.scrollback.read(since)
        return start, bytes(data), lost

    def subscribe(
        self, since: int | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[Any]]:
        return self.term.subscribe(since)

    async def write(self, data: bytes) -> None:
        await self.term.write(data)

    async def wait_exit(self) -> tuple[int | None, int | None]:
        return await self.term.wait_exit()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.term.proc.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def suspend(self) -> None:
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    async def kill(self) -> None:
        # Kills the whole process group/session (SIGHUP, grace, SIGKILL).
        await self._service.kill(self.term.id)


class TerminalServiceLauncher:
    """Launch agents through a :class:`TerminalService` (in the daemon or standalone)."""

    def __init__(self, service: TerminalService) -> None:
        self.service = service

    def free_slots(self) -> int:
        pool = self.service.pool
        return int(pool.max_ptys - pool.active_count)

    async def launch(
        self, argv: Sequence[str], *, cwd: str, env: Mapping[str, str], name: str
    ) -> TerminalAgentProcess:
        term = await self.service.create(
            list(argv), cwd=cwd, env=dict(env), name=name, persistent=True
        )
        return TerminalAgentProcess(self.service, term)

    def is_alive(self, terminal_id: str) -> bool:
        try:
            return not self.service.get(terminal_id).is_dead
        except TundraError:
            return False

    async def forget(self, terminal_id: str) -> None:
        """Drop a dead agent terminal (its output is saved in the task log)."""
        try:
            await self.service.remove(terminal_id)
        except TundraError:
            pass


class DaemonTerminalLauncher(TerminalServiceLauncher):
    def __init__(self, daemon: Daemon) -> None:
        super().__init__(daemon.service("terminals"))
