"""The narrow interfaces the tasks service needs from its neighbours (terminals, store).

Keeping them small lets unit tests drive the scheduler and runner with tiny fakes while the
daemon plugs in the real terminals service (:mod:`tundra.agents.terminals`) and the store
(:mod:`tundra.tasks.store`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from tundra.tasks.model import AgentRun, Task, TaskEvent

__all__ = ["AgentProcess", "TerminalLauncher", "TaskStore"]


class AgentProcess(Protocol):
    """A running agent CLI (a persistent terminal in the daemon)."""

    @property
    def id(self) -> str: ...

    @property
    def last_output_at(self) -> float:
        """trio clock time of the last output."""

    @property
    def offset(self) -> int:
        """Total bytes produced so far."""

    def read(self, since: int | None = None) -> tuple[int, bytes, int]:
        """``(start, data, lost)`` of retained output after ``since``."""

    def subscribe(
        self, since: int | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[Any]]:
        """Replay then live items with ``.data`` (output) or exit/gap items."""

    async def write(self, data: bytes) -> None: ...

    async def wait_exit(self) -> tuple[int | None, int | None]:
        """``(exit_code, exit_signal)`` once the process is gone."""

    async def kill(self) -> None:
        """Kill the whole process group (returns once it is dead)."""

    def suspend(self) -> None:
        """SIGSTOP the process group (user pause)."""

    def resume(self) -> None:
        """SIGCONT the process group."""


class TerminalLauncher(Protocol):
    def free_slots(self) -> int:
        """How many more terminals the PTY pool can hold right now."""

    async def launch(
        self, argv: Sequence[str], *, cwd: str, env: Mapping[str, str], name: str
    ) -> AgentProcess: ...

    def is_alive(self, terminal_id: str) -> bool: ...

    async def forget(self, terminal_id: str) -> None:
        """Drop a dead agent terminal once its output is saved in the task log."""


class TaskStore(Protocol):
    """Persistence of tasks and their history (write-through from the service)."""

    async def load_all(self) -> list[Task]: ...

    async def insert(self, task: Task) -> None: ...

    async def save(self, task: Task) -> None: ...

    async def append_event(self, event: TaskEvent) -> None: ...

    async def events(self, task_id: str) -> list[TaskEvent]: ...

    async def run_started(self, run: AgentRun) -> None:
        """Record the start of one attempt (``agent_runs``)."""

    async def run_finished(self, run: AgentRun) -> None:
        """Record how an attempt ended (state, exit code/signal, error)."""

    async def runs(self, task_id: str) -> list[AgentRun]: ...
