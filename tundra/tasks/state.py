"""The task state machine: which event moves which state where. Invalid moves raise.

::

    queued --start--> running --complete--> review --approve--> done
                      running --finish--> done            (no approval, nothing to merge)
                      running --fail--> failed --retry--> queued
                      running --wait--> waiting --resume--> running
                      review --reject--> queued           review --fail--> failed (conflict)
                      running|waiting --interrupt--> interrupted --requeue--> queued
    any non-final --cancel--> cancelled                   (final: done, cancelled)
"""

from __future__ import annotations

from typing import Final

from tundra.tasks.errors import StateMachineError
from tundra.tasks.model import FINAL_STATES, STATES, TaskState

__all__ = ["TRANSITIONS", "EVENTS", "next_state", "can_apply"]

TRANSITIONS: Final[dict[tuple[str, str], TaskState]] = {
    ("queued", "start"): "running",
    ("running", "complete"): "review",
    ("running", "finish"): "done",
    ("running", "fail"): "failed",
    ("running", "wait"): "waiting",
    ("waiting", "resume"): "running",
    ("waiting", "fail"): "failed",
    ("failed", "retry"): "queued",
    ("review", "approve"): "done",
    ("review", "reject"): "queued",
    ("review", "fail"): "failed",
    ("running", "interrupt"): "interrupted",
    ("waiting", "interrupt"): "interrupted",
    ("interrupted", "requeue"): "queued",
}
for _state in STATES:
    if _state not in FINAL_STATES:
        TRANSITIONS[(_state, "cancel")] = "cancelled"

EVENTS: Final[frozenset[str]] = frozenset(ev for _, ev in TRANSITIONS)


def can_apply(state: str, event: str) -> bool:
    return (state, event) in TRANSITIONS


def next_state(state: str, event: str, *, task_id: str | None = None) -> TaskState:
    """The state ``event`` leads to from ``state``; :class:`StateMachineError` if none."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise StateMachineError(event, state, task_id=task_id) from None
