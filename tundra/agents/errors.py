"""Errors of the agent layer: unknown/invalid presets, supervision and approval failures."""

from __future__ import annotations

from collections.abc import Iterable

from tundra.errors import TundraError

__all__ = ["AgentError", "RegistryError", "SupervisorError", "ApprovalError"]


class AgentError(TundraError):
    code = "agent.error"
    http_status = 400


class RegistryError(AgentError):
    """Unknown or invalid agent preset; the message names it and lists the known ones."""

    code = "agent.registry"
    http_status = 400
    default_hint = "see `tundra agents ls`; presets can be added in config/agents.toml"

    def __init__(self, message: str, *, preset: str, known: Iterable[str]) -> None:
        names = sorted(known)
        super().__init__(
            f"{message} (known presets: {', '.join(names) or 'none'})",
            details={"preset": preset, "known": names},
        )
        self.preset = preset
        self.known = names


class SupervisorError(AgentError):
    """The supervisor could not watch or stop an agent."""

    code = "agent.supervisor"
    http_status = 500


class ApprovalError(AgentError):
    """Approve/reject of a task that is not in review, or a merge that failed."""

    code = "agent.approval"
    http_status = 409
