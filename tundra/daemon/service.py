"""The contract every daemon service (store, PTY pool, LLM router, scheduler...) follows.

The daemon builds its services in order (see :mod:`tundra.daemon.services`), lets each
register its IPC methods, then starts each with ``await nursery.start(service.run)``:
``run`` calls ``task_status.started()`` once it is ready to serve and then runs until
cancelled -- cancellation is the shutdown path, so ``run`` must clean up (kill children,
close connections) in ``finally``/cancel-shielded blocks bounded by a timeout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import trio

if TYPE_CHECKING:
    from tundra.config.schema import Config
    from tundra.daemon.app import Daemon
    from tundra.ipc.registry import MethodRegistry

__all__ = ["Service"]


class Service(Protocol):
    name: str
    """Short name shown in `tundra status` ("store", "terminals", "llm", "tasks")."""

    def register(self, registry: MethodRegistry) -> None:
        """Add this service's IPC methods."""

    async def run(
        self, daemon: Daemon, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start, report ready via ``task_status.started()``, serve until cancelled."""

    def status(self) -> dict[str, Any]:
        """A small JSON-able dict for `tundra status` (state, counts, last error)."""

    def reload(self, config: Config) -> None:
        """Apply a new config after SIGHUP (only what can change live)."""
