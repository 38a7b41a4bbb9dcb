"""The daemon's composition root: owns config, paths, the event bus and every service."""

from __future__ import annotations

import time
from typing import Any

from tundra import __version__
from tundra.config.schema import Config
from tundra.daemon.events import EventBus
from tundra.daemon.service import Service
from tundra.ipc.registry import MethodRegistry
from tundra.paths import TundraPaths

__all__ = ["Daemon"]


class Daemon:
    """State shared by the daemon's services (one per process).

    Services find each other through :meth:`service` (by name) after construction.
    """

    def __init__(self, config: Config, paths: TundraPaths, *, socket_path: str = "") -> None:
        self.config = config
        self.paths = paths
        self.socket_path = socket_path
        self.version = __version__
        self.started_at = time.time()
        self.events = EventBus()
        self.registry = MethodRegistry()
        self.services: dict[str, Service] = {}

    def add_service(self, service: Service) -> None:
        self.services[service.name] = service
        service.register(self.registry)

    def service(self, name: str) -> Any:
        """The service registered under ``name`` (KeyError if absent)."""
        return self.services[name]
