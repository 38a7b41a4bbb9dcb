"""Errors of the task layer: state machine violations, unknown ids, runner/lifecycle failures."""

from __future__ import annotations

from tundra.errors import TundraError

__all__ = [
    "TaskError",
    "StateMachineError",
    "TaskNotFoundError",
    "AmbiguousTaskIdError",
    "TaskRunnerError",
    "LifecycleError",
]


class TaskError(TundraError):
    """Root of task-layer errors."""

    code = "task.error"
    http_status = 400


class StateMachineError(TaskError):
    """An event that the task's current state does not accept."""

    code = "task.invalid_transition"
    http_status = 409

    def __init__(self, event: str, state: str, *, task_id: str | None = None) -> None:
        super().__init__(
            f"invalid transition: cannot apply {event} in state {state}",
            details={"event": event, "state": state, **({"task_id": task_id} if task_id else {})},
        )
        self.event = event
        self.state = state


class TaskNotFoundError(TaskError):
    code = "task.not_found"
    http_status = 404
    default_hint = "list tasks with `tundra task ls`"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task not found: {task_id}", details={"id": task_id})


class AmbiguousTaskIdError(TaskError):
    code = "task.ambiguous_id"
    http_status = 400
    default_hint = "type more characters of the task id"

    def __init__(self, prefix: str, matches: list[str]) -> None:
        shown = ", ".join(sorted(matches)[:5])
        super().__init__(
            f"task id prefix is ambiguous: {prefix} (matches {shown})",
            details={"prefix": prefix, "matches": sorted(matches)},
        )


class TaskRunnerError(TaskError):
    """Running an attempt failed before the agent could start (spawn, worktree)."""

    code = "task.runner"
    http_status = 500


class LifecycleError(TaskError):
    """The queue or the service cannot do that now (e.g. drain timed out, service stopped)."""

    code = "task.lifecycle"
    http_status = 409
