"""TaskStore implementations: in memory (tests, no store) and over the daemon's store API."""

from __future__ import annotations

from typing import Any

import msgspec

from tundra.tasks.model import LANE_RANK, AgentRun, Task, TaskEvent

__all__ = ["MemoryTaskStore", "RecordTaskStore"]

_RANK_LANE = {v: k for k, v in LANE_RANK.items()}
# Task fields kept in TaskRecord.extra (the store's columns do not have them).
_EXTRA_FIELDS = ("held", "not_before", "env", "session_id", "resume")


class MemoryTaskStore:
    """Keeps everything in dicts; lost with the process."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.history: dict[str, list[TaskEvent]] = {}
        self.agent_runs: dict[str, AgentRun] = {}

    async def load_all(self) -> list[Task]:
        return [msgspec.structs.replace(t) for t in self.tasks.values()]

    async def insert(self, task: Task) -> None:
        self.tasks[task.id] = msgspec.structs.replace(task)

    async def save(self, task: Task) -> None:
        self.tasks[task.id] = msgspec.structs.replace(task)

    async def append_event(self, event: TaskEvent) -> None:
        self.history.setdefault(event.task_id, []).append(event)

    async def events(self, task_id: str) -> list[TaskEvent]:
        return list(self.history.get(task_id, []))

    async def run_started(self, run: AgentRun) -> None:
        self.agent_runs[run.id] = msgspec.structs.replace(run)

    async def run_finished(self, run: AgentRun) -> None:
        self.agent_runs[run.id] = msgspec.structs.replace(run)

    async def runs(self, task_id: str) -> list[AgentRun]:
        return sorted(
            (r for r in self.agent_runs.values() if r.task_id == task_id), key=lambda r: r.attempt
        )


class RecordTaskStore:
    """Maps :class:`Task` onto the store's ``TaskRecord`` / ``task_events`` repositories."""

    def __init__(self, store: Any) -> None:
        self._store = store

    @staticmethod
    def _to_record_fields(task: Task) -> dict[str, Any]:
        d: dict[str, Any] = msgspec.to_builtins(task)
        extra = {k: d.pop(k) for k in _EXTRA_FIELDS}
        d["lane"] = LANE_RANK.get(task.lane, 1)
        d["extra"] = extra
        for k in ("branch", "worktree", "terminal_id", "result"):
            d[k] = d[k] or None
        return d

    @staticmethod
    def _from_record(rec: Any) -> Task:
        d = msgspec.to_builtins(rec)
        extra = d.pop("extra", None) or {}
        d["lane"] = _RANK_LANE.get(int(d.get("lane", 1)), "standard")
        for k in ("branch", "worktree", "terminal_id", "result"):
            d[k] = d.get(k) or ""
        for k in _EXTRA_FIELDS:
            if k in extra:
                d[k] = extra[k]
        fields = set(Task.__struct_fields__)
        return msgspec.convert({k: v for k, v in d.items() if k in fields}, Task)

    async def load_all(self) -> list[Task]:
        return [self._from_record(r) for r in await self._store.tasks.list()]

    async def insert(self, task: Task) -> None:
        from tundra.store.api import TaskRecord

        rec = msgspec.convert(self._to_record_fields(task), TaskRecord)
        await self._store.tasks.insert(rec)

    async def save(self, task: Task) -> None:
        fields = self._to_record_fields(task)
        fields.pop("id")
        fields.pop("created_at", None)
        fields.pop("updated_at", None)
        await self._store.tasks.update(task.id, **fields)

    async def append_event(self, event: TaskEvent) -> None:
        data = msgspec.to_builtins(event)
        data.pop("task_id")
        kind = data.pop("kind")
        await self._store.task_events.append(event.task_id, kind, data)

    async def events(self, task_id: str) -> list[TaskEvent]:
        out = []
        for rec in await self._store.task_events.list(task_id, limit=100_000):
            data = dict(rec.data)
            data.setdefault("ts", rec.created_at)
            out.append(msgspec.convert({**data, "task_id": task_id, "kind": rec.kind}, TaskEvent))
        return out

    async def run_started(self, run: AgentRun) -> None:
        from tundra.store.api import AgentRunRecord

        d = msgspec.to_builtins(run)
        d["terminal_id"] = d["terminal_id"] or None
        d["error"] = d["error"] or None
        existing = await self._store.agent_runs.get(run.id)
        if existing is not None:
            # A re-run of the same attempt number (after an interruption): start afresh.
            fields = {k: v for k, v in d.items() if k != "id"}
            await self._store.agent_runs.update(run.id, **fields)
            return
        await self._store.agent_runs.insert(msgspec.convert(d, AgentRunRecord))

    async def run_finished(self, run: AgentRun) -> None:
        await self._store.agent_runs.update(
            run.id,
            state=run.state,
            exit_code=run.exit_code,
            exit_signal=run.exit_signal,
            error=run.error or None,
            finished_at=run.finished_at,
        )

    async def runs(self, task_id: str) -> list[AgentRun]:
        out = []
        for rec in await self._store.agent_runs.list(task_id):
            d = msgspec.to_builtins(rec)
            d["terminal_id"] = d.get("terminal_id") or ""
            d["error"] = d.get("error") or ""
            fields = set(AgentRun.__struct_fields__)
            out.append(msgspec.convert({k: v for k, v in d.items() if k in fields}, AgentRun))
        return out
