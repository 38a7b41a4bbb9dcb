"""IPC contract of the `tasks` service: method names, params Structs and result shapes.

Every params Struct accepts unknown fields (newer clients) and has defaults for optional
fields, so a bridge can pass a JSON body straight through. Results are msgspec-encodable
builtins; a task is always the TaskInfo shape: :class:`tundra.tasks.model.Task` as a dict --
``id, title, prompt, repo, base_branch, preset, lane, priority, requires_approval,
max_attempts, timeout_secs, state, attempts, held, session_id, resume, branch, worktree,
terminal_id, exit_code, result, not_before, created_at, updated_at, started_at, finished_at,
env`` (env values masked as ``***``).

=====================  ==========================  ============================================
method                 params                      result
=====================  ==========================  ============================================
``task.add``           :class:`TaskAddParams`      TaskInfo (state ``queued``)
``task.list``          :class:`TaskListParams`     ``{"tasks": [TaskInfo, ...]}`` (newest first)
``task.get``           :class:`TaskIdParams`       TaskInfo
``task.history``       :class:`TaskIdParams`       ``{"events": [TaskEvent, ...]}`` (oldest first)
``task.logs``          :class:`TaskLogsParams`     stream of ``{"type": "output", "offset",
                                                   "data": bytes}`` / ``{"type": "gap", ...}``;
                                                   result ``{"state": str}``
``task.cancel``        :class:`TaskIdParams`       TaskInfo (``cancelled``; agent killed)
``task.retry``         :class:`TaskIdParams`       TaskInfo (``failed``/``interrupted`` ->
                                                   ``queued``)
``task.pause``         :class:`TaskIdParams`       TaskInfo (queued: held; running: ``waiting``)
``task.resume``        :class:`TaskIdParams`       TaskInfo (un-held / ``running``)
``task.approve``       :class:`TaskIdParams`       TaskInfo (``done``; merged with --no-ff)
``task.reject``        :class:`TaskRejectParams`   TaskInfo (``queued`` or ``cancelled``)
``task.diff``          :class:`TaskIdParams`       :class:`TaskDiff`
``task.attach-info``   :class:`TaskIdParams`       :class:`AttachInfo`
``task.nudge``         :class:`TaskNudgeParams`    ``{}`` (text typed into the agent terminal)
``task.runs``          :class:`TaskIdParams`       ``{"runs": [AgentRun, ...]}`` (one per attempt:
                                                   state, terminal, pid, exit, error, times)
``task.clean``         :class:`TaskCleanParams`    TaskInfo (worktree + branch removed; refuses
                                                   unmerged work unless ``force``)
``queue.status``       ``{}``                      :class:`QueueStatus`
``queue.pause``        ``{}``                      :class:`QueueStatus`
``queue.resume``       ``{}``                      :class:`QueueStatus`
``queue.drain``        :class:`QueueDrainParams`   :class:`QueueStatus` (paused; no running)
``agents.list``        ``{}``                      ``{"presets": [PresetInfo, ...]}``
=====================  ==========================  ============================================

Errors: ``task.not_found`` (404), ``task.ambiguous_id`` (400), ``task.invalid_transition``
(409, "invalid transition: cannot apply <event> in state <state>"), ``agent.approval`` (409),
``agent.registry`` (400, unknown preset), ``workspace.worktree`` / ``workspace.repo`` (409/400).
Task ids are 8 hex chars; every ``id`` param also accepts a unique prefix.
Events on the bus (``events.subscribe`` topics ``task.``): ``task.created``, ``task.state``
(data: TaskInfo + ``from_state``, ``event``), ``task.stuck``, ``task.nudge``.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "TaskAddParams",
    "TaskListParams",
    "TaskIdParams",
    "TaskRejectParams",
    "TaskLogsParams",
    "TaskNudgeParams",
    "TaskCleanParams",
    "QueueDrainParams",
    "QueueStatus",
    "TaskDiff",
    "AttachInfo",
    "PresetInfo",
]


class TaskAddParams(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    title: str
    prompt: str = ""
    """Empty = use the title as the prompt."""
    repo: str = ""
    """Path of the git repository (the CLI sends its cwd). Required."""
    base_branch: str = ""
    """Empty = the repository's current branch."""
    agent: str = ""
    """Preset name; empty = ``[agents] default_preset``."""
    lane: str = "standard"
    priority: int = 0
    requires_approval: bool = True
    max_attempts: int = 0
    """0 = ``[agents] default_max_attempts``."""
    timeout_secs: float = 0.0
    """0 = ``[agents] default_timeout_secs``."""
    env: dict[str, str] = msgspec.field(default_factory=dict)
    held: bool = False
    """Add it paused (not dispatched until ``task.resume``)."""


class TaskListParams(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    state: str | None = None
    repo: str | None = None
    limit: int = 0
    """0 = all."""


class TaskIdParams(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    id: str


class TaskRejectParams(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    id: str
    reason: str = ""
    cancel: bool = False
    """True = reject to ``cancelled`` instead of back to ``queued``."""


class TaskLogsParams(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    id: str
    follow: bool = False
    since: int = 0


class TaskCleanParams(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    id: str
    force: bool = False


class TaskNudgeParams(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    id: str
    text: str
    enter: bool = True
    """Send a carriage return after the text."""


class QueueDrainParams(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    timeout_secs: float = 0.0
    """Wait this long for running tasks to finish (0 = do not wait)."""


class QueueStatus(msgspec.Struct, kw_only=True):
    paused: bool
    draining: bool
    queued: int
    running: int
    max_concurrent: int
    per_repo_limit: int


class TaskDiff(msgspec.Struct, kw_only=True):
    id: str
    branch: str
    base_branch: str
    stat: str
    diff: str


class AttachInfo(msgspec.Struct, kw_only=True):
    id: str
    state: str
    terminal_id: str
    alive: bool


class PresetInfo(msgspec.Struct, kw_only=True):
    name: str
    description: str
    binary: str
    available: bool
    path: str
    command: list[str]
    source: str
    """``builtin`` or the overriding file."""
    extra: dict[str, Any] = msgspec.field(default_factory=dict)
