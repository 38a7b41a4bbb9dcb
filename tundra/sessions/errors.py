"""PtyError and TerminalError families (texts follow the troubleshooting guide)."""

from __future__ import annotations

from typing import Any

from tundra.errors import TundraError

__all__ = [
    "PtyError",
    "PtyAtCapacity",
    "PtyHandleNotFound",
    "PtySpawnFailed",
    "SpawnReason",
    "TerminalError",
    "TerminalNotFound",
    "TerminalDead",
]


class PtyError(TundraError):
    """Root of PTY pool failures."""

    code = "pty.error"
    http_status = 500


class PtyAtCapacity(PtyError):
    code = "pty.at_capacity"
    http_status = 503
    default_hint = "kill or remove unused terminals (`tundra term ls`), or raise [daemon] max_ptys"

    def __init__(self, max_ptys: int) -> None:
        super().__init__(f"pty pool is at capacity ({max_ptys})", details={"max_ptys": max_ptys})


class PtyHandleNotFound(PtyError):
    code = "pty.handle_not_found"
    http_status = 404

    def __init__(self, handle_id: str) -> None:
        super().__init__(f"pty handle not found: {handle_id}", details={"id": handle_id})


class SpawnReason:
    """Machine-readable ``details["reason"]`` values of :class:`PtySpawnFailed`."""

    NOT_FOUND = "not_found"
    NOT_EXECUTABLE = "not_executable"
    CWD_MISSING = "cwd_missing"
    RESOURCES = "resources"
    EXEC_ERROR = "exec_error"
    INVALID = "invalid"


class PtySpawnFailed(PtyError):
    code = "pty.spawn_failed"
    http_status = 500

    def __init__(self, detail: str, *, reason: str, hint: str | None = None) -> None:
        super().__init__(f"pty spawn failed: {detail}", hint=hint, details={"reason": reason})

    @property
    def reason(self) -> str:
        return str(self.details.get("reason", ""))


class TerminalError(TundraError):
    code = "terminal.error"
    http_status = 500


class TerminalNotFound(TerminalError):
    code = "terminal.not_found"
    http_status = 404
    default_hint = "list terminals with `tundra term ls`"

    def __init__(self, terminal_id: str, *, ambiguous: list[str] | None = None) -> None:
        details: dict[str, Any] = {"id": terminal_id}
        hint = None
        if ambiguous:
            details["candidates"] = ambiguous
            hint = "the prefix matches several terminals: " + ", ".join(ambiguous[:5])
        super().__init__(f"terminal not found: {terminal_id}", hint=hint, details=details)


class TerminalDead(TerminalError):
    code = "terminal.dead"
    http_status = 410
    default_hint = "its scrollback stays readable (`tundra term output ID`); create a new terminal"

    def __init__(self, exit_code: int | None = None, exit_signal: int | None = None) -> None:
        super().__init__(
            "terminal is dead", details={"exit_code": exit_code, "exit_signal": exit_signal}
        )
