"""Which queued task runs next: lane > priority > age, within the concurrency limits.

Pure logic (no I/O) so it is unit-tested directly; the service calls :func:`pick_next` each
time a slot frees up or a task is queued.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import msgspec

from tundra.tasks.model import Task, dispatch_key

__all__ = ["Limits", "pick_next", "capacity_left"]


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    max_concurrent: int
    per_repo_limit: int = 0
    """0 = unlimited."""


def capacity_left(limits: Limits, running: int, free_ptys: int) -> int:
    """How many more tasks may start now: never beyond max_concurrent or the PTY pool."""
    return max(0, min(limits.max_concurrent - running, free_ptys))


def pick_next(
    tasks: Iterable[Task], running: Iterable[Task], limits: Limits, *, now: float
) -> Task | None:
    """The best queued task that may start at ``now`` (None when none may)."""
    per_repo = Counter(t.repo for t in running)
    best: Task | None = None
    for t in tasks:
        if t.state != "queued" or t.held or t.not_before > now:
            continue
        if limits.per_repo_limit and per_repo[t.repo] >= limits.per_repo_limit:
            continue
        if best is None or dispatch_key(t) < dispatch_key(best):
            best = t
    return best
