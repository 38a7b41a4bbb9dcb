"""Which services the daemon runs, in start order (stopped in reverse).

Each area adds its service here. Order matters: later services may use earlier ones
(`daemon.service("store")`) from their ``run``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tundra.daemon.app import Daemon
    from tundra.daemon.service import Service

__all__ = ["build_services"]


def build_services(daemon: Daemon) -> list[Service]:
    services: list[Service] = []
    # store -> terminals -> llm -> tasks
    from tundra.store.service import StoreService

    services.append(StoreService(daemon))
    from tundra.sessions.service import TerminalService

    services.append(TerminalService(daemon.config, orphans_file=daemon.paths.orphans_file))
    from tundra.intelligence.service import LlmService

    services.append(LlmService(daemon))
    from tundra.tasks.service import TaskService

    services.append(TaskService.from_daemon(daemon))
    return services
