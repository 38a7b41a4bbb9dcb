"""Errors of the daemon's own lifecycle (lock, start-up)."""

from __future__ import annotations

from tundra.errors import TundraError

__all__ = ["DaemonAlreadyRunning", "DaemonStartError"]


class DaemonAlreadyRunning(TundraError):
    code = "daemon.already_running"
    http_status = 409
    default_hint = "stop it first (`tundra daemon stop` or systemctl), or use another TUNDRA_HOME"


class DaemonStartError(TundraError):
    code = "daemon.start_failed"
    http_status = 500
