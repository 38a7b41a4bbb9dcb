"""Errors raised by `tundra service`, `tundra logs`, `tundra doctor` and `tundra diagnose`."""

from __future__ import annotations

from tundra.errors import TundraError

__all__ = ["ServiceError", "ServiceManagerUnavailable", "ServiceCommandFailed"]


class ServiceError(TundraError):
    """Installing or controlling the OS service failed."""

    code = "service.error"
    http_status = 500


class ServiceManagerUnavailable(ServiceError):
    """No systemd (or launchd) manager to talk to: containers, WSL without systemd, CI.

    The message says which manager is missing; the hint is the manual alternative.
    """

    code = "service.unavailable"
    http_status = 501


class ServiceCommandFailed(ServiceError):
    """``systemctl``/``launchctl``/``journalctl`` returned non-zero."""

    code = "service.command_failed"
