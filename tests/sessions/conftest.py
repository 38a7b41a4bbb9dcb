"""Fixtures for terminal tests: a TerminalService running in the test's nursery."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tundra.config.schema import Config, DaemonConfig, TerminalsConfig
from tundra.sessions.service import TerminalService


def make_config(**kw: Any) -> Config:
    daemon = {k: kw.pop(k) for k in list(kw) if k in DaemonConfig.__struct_fields__}
    daemon.setdefault("kill_grace_secs", 0.5)
    return Config(daemon=DaemonConfig(**daemon), terminals=TerminalsConfig(**kw))


@pytest.fixture
async def start_service(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await start_service(max_ptys=3, reconnect_grace_secs=1)`` -> a running service."""

    async def start(**kw: Any) -> TerminalService:
        svc = TerminalService(make_config(**kw), orphans_file=tmp_path / "pgids.json")
        await nursery.start(svc.run)
        return svc

    yield start


@pytest.fixture
async def svc(start_service: Callable[..., Any]) -> TerminalService:
    service: TerminalService = await start_service()
    return service


def zombies_of(pid: int) -> list[int]:
    """Zombie children of ``pid``."""
    from tundra.sessions import proctable

    return [st.pid for st in proctable.iter_stats() if st.ppid == pid and st.state == "Z"]


def live_with_marker(terminal_ids: list[str]) -> list[int]:
    from tundra.sessions import proctable

    return [m.pid for m in proctable.find_members(terminal_ids=terminal_ids)]


def me() -> int:
    return os.getpid()
