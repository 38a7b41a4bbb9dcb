"""Run a real TaskService over a real (standalone) TerminalService for tests."""

from __future__ import annotations

import shlex
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from tundra.agents.registry import PresetRegistry
from tundra.agents.terminals import TerminalServiceLauncher
from tundra.config.schema import AgentsConfig, Config, DaemonConfig
from tundra.sessions.service import TerminalService
from tundra.tasks.api import TaskAddParams
from tundra.tasks.model import Task
from tundra.tasks.service import TaskService
from tundra.tasks.store import MemoryTaskStore

__all__ = ["FAKE_AGENT", "fake", "running_tasks", "add"]

FAKE_AGENT = Path(__file__).resolve().parent.parent / "fakes" / "fake_agent.py"


def fake(*actions: str) -> str:
    """A shell-preset prompt that runs the fake agent with ``actions``."""
    return shlex.join([sys.executable, str(FAKE_AGENT), *actions])


@asynccontextmanager
async def running_tasks(
    tmp_path: Path,
    *,
    max_ptys: int = 10,
    store: MemoryTaskStore | None = None,
    registry: PresetRegistry | None = None,
    **agents: Any,
) -> AsyncIterator[TaskService]:
    agents.setdefault("default_preset", "shell")
    agents.setdefault("retry_backoff_secs", 0.0)
    config = Config(
        agents=AgentsConfig(**agents), daemon=DaemonConfig(max_ptys=max_ptys, kill_grace_secs=0.5)
    )
    terms = TerminalService(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(terms.run)
        svc = TaskService(
            config.agents,
            worktrees_dir=tmp_path / "home" / "data" / "worktrees",
            logs_dir=tmp_path / "home" / "logs" / "tasks",
            store=store if store is not None else MemoryTaskStore(),
            launcher=TerminalServiceLauncher(terms),
            registry=registry,
        )
        await nursery.start(svc.serve)
        try:
            yield svc
        finally:
            nursery.cancel_scope.cancel()


async def add(svc: TaskService, repo: Path, prompt: str, **kw: Any) -> Task:
    kw.setdefault("title", "t")
    return await svc.add(TaskAddParams(prompt=prompt, repo=str(repo), **kw))
