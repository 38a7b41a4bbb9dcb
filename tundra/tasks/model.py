"""The task record, its history events, lanes and states (plain msgspec data)."""

from __future__ import annotations

import secrets
from typing import Any, Literal

import msgspec

__all__ = [
    "Task",
    "TaskEvent",
    "AgentRun",
    "TaskState",
    "Lane",
    "LANES",
    "LANE_RANK",
    "STATES",
    "FINAL_STATES",
    "new_task_id",
    "dispatch_key",
]

TaskState = Literal[
    "queued", "running", "waiting", "review", "done", "failed", "cancelled", "interrupted"
]
STATES: tuple[TaskState, ...] = (
    "queued",
    "running",
    "waiting",
    "review",
    "done",
    "failed",
    "cancelled",
    "interrupted",
)
FINAL_STATES: frozenset[str] = frozenset({"done", "cancelled"})

Lane = Literal["critical", "standard", "experimental"]
LANES: tuple[Lane, ...] = ("critical", "standard", "experimental")
# Higher rank dispatches first.
LANE_RANK: dict[str, int] = {"critical": 2, "standard": 1, "experimental": 0}


def new_task_id() -> str:
    """Short random id (8 hex chars); callers check for collisions in their repository."""
    return secrets.token_hex(4)


class Task(msgspec.Struct, kw_only=True):
    """One unit of agent work. Mutable: the service updates it and persists each change."""

    id: str
    title: str
    prompt: str
    repo: str
    """Absolute path of the git repository the agent works on."""
    base_branch: str
    preset: str
    lane: Lane = "standard"
    priority: int = 0
    """Higher runs first within a lane."""
    requires_approval: bool = True
    max_attempts: int = 3
    timeout_secs: float = 3600.0
    state: TaskState = "queued"
    attempts: int = 0
    held: bool = False
    session_id: str = ""
    """The agent's own session id, captured from its output (preset ``session_id_pattern``)."""
    resume: bool = False
    """The next attempt continues the interrupted session (preset ``resume_command``)."""
    """A queued task that `task pause` holds back from dispatch."""
    branch: str = ""
    worktree: str = ""
    terminal_id: str = ""
    exit_code: int | None = None
    result: str = ""
    """Summary of the outcome: failure reason (output tail), merge result, ..."""
    not_before: float = 0.0
    """Epoch seconds before which a retried task is not dispatched (backoff)."""
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    env: dict[str, str] = msgspec.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The public shape (IPC results, events): env values are masked, they may be keys."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        out["env"] = {k: "***" for k in self.env}
        return out


class TaskEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of a task's append-only history."""

    task_id: str
    ts: float
    kind: str
    """`state` (a transition), `stuck`, `nudge`, `output`, `note`, `merge`..."""
    from_state: str = ""
    to_state: str = ""
    message: str = ""
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class AgentRun(msgspec.Struct, kw_only=True):
    """One attempt of an agent at a task (the store's ``agent_runs``)."""

    id: str
    """``<task-id>-<attempt>``."""
    task_id: str
    attempt: int
    preset: str
    state: str = "running"
    """``running``, then ``succeeded`` | ``failed`` | ``timeout`` | ``stuck`` | ``cancelled`` |
    ``interrupted`` (daemon stopped) | ``error`` (could not start/finish)."""
    terminal_id: str = ""
    pid: int | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    error: str = ""
    started_at: float = 0.0
    finished_at: float | None = None


def dispatch_key(task: Task) -> tuple[int, int, float, str]:
    """Sort key: lane (critical first), then priority (high first), then age (old first)."""
    return (-LANE_RANK.get(task.lane, 0), -task.priority, task.created_at, task.id)
