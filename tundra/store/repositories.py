"""The repositories: SQL for terminals, tasks, task events, agent runs, usage, audit events,
settings. Written once with ``?`` placeholders for both engines.

Every write is idempotent so the store may retry it after a reconnect without doubling it:
rows with natural ids are upserted or compared, appends carry a client-made ``uid`` (a retry
whose first attempt did commit finds its row by that uid instead of inserting again).
"""

from __future__ import annotations

import builtins
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from tundra.store.api import (
    AGENT_RUN_FIELDS,
    TASK_FIELDS,
    AgentRunRecord,
    AuditEventRecord,
    TaskEventRecord,
    TaskRecord,
    TerminalRecord,
)
from tundra.store.engine import Row, Session
from tundra.store.errors import StoreConflict, StoreNotFound

if TYPE_CHECKING:
    from tundra.store.store import Store

__all__ = [
    "Terminals",
    "Tasks",
    "TaskEvents",
    "AgentRuns",
    "Usage",
    "AuditEvents",
    "Settings",
]

T = TypeVar("T")
_json_enc = msgspec.json.Encoder()


def _dumps(value: Any) -> str:
    return _json_enc.encode(value).decode()


def _loads(text: Any) -> Any:
    if text is None or text == "":
        return None
    if isinstance(text, (bytes, bytearray)):
        return msgspec.json.decode(bytes(text))
    return msgspec.json.decode(str(text).encode())


def _as_dict(value: msgspec.Struct | dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    out = msgspec.to_builtins(value)
    assert isinstance(out, dict)
    return out


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


def _like_prefix(prefix: str) -> str:
    return prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


class _Repo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def _write(self, fn: Callable[[Session], T]) -> T:
        return await self._store.run(fn, write=True)

    async def _read(self, fn: Callable[[Session], T]) -> T:
        return await self._store.run(fn, write=False)


# -- terminals ---------------------------------------------------------------------------

_TERM_COLS = (
    "id",
    "name",
    "argv",
    "cwd",
    "pid",
    "pgid",
    "created_at",
    "last_activity",
    "term_rows",
    "term_cols",
    "persistent",
    "status",
    "disconnected_since",
    "exit_code",
    "exit_signal",
    "updated_at",
)
_TERM_SELECT = f"SELECT {', '.join(_TERM_COLS)} FROM terminals"


def _term_from_row(r: Row) -> TerminalRecord:
    return TerminalRecord(
        id=str(r[0]),
        name=str(r[1]),
        argv=list(_loads(r[2]) or []),
        cwd=str(r[3]),
        pid=_opt_int(r[4]),
        pgid=_opt_int(r[5]),
        created_at=float(r[6]),
        last_activity=float(r[7]),
        rows=int(r[8]),
        cols=int(r[9]),
        persistent=bool(r[10]),
        status=str(r[11]),
        disconnected_since=_opt_float(r[12]),
        exit_code=_opt_int(r[13]),
        exit_signal=_opt_int(r[14]),
        updated_at=float(r[15]),
    )


class Terminals(_Repo):
    async def upsert(self, info: TerminalRecord | msgspec.Struct | dict[str, Any]) -> None:
        d = _as_dict(info)
        known = {k: v for k, v in d.items() if k in TerminalRecord.__struct_fields__}
        rec = msgspec.convert(known, TerminalRecord)
        now = time.time()
        params = (
            rec.id,
            rec.name,
            _dumps(rec.argv),
            rec.cwd,
            rec.pid,
            rec.pgid,
            rec.created_at or now,
            rec.last_activity,
            rec.rows,
            rec.cols,
            int(rec.persistent),
            rec.status,
            rec.disconnected_since,
            rec.exit_code,
            rec.exit_signal,
            now,
        )

        def do(s: Session) -> None:
            s.execute(s.dialect.upsert("terminals", _TERM_COLS, ("id",)), params)

        await self._write(do)

    async def get(self, terminal_id: str) -> TerminalRecord | None:
        def do(s: Session) -> TerminalRecord | None:
            r = s.query_one(_TERM_SELECT + " WHERE id = ?", (terminal_id,))
            return _term_from_row(r) if r else None

        return await self._read(do)

    async def list(self, *, status: str | None = None) -> builtins.list[TerminalRecord]:
        def do(s: Session) -> builtins.list[TerminalRecord]:
            if status is None:
                rows = s.query(_TERM_SELECT + " ORDER BY created_at, id")
            else:
                rows = s.query(
                    _TERM_SELECT + " WHERE status = ? ORDER BY created_at, id", (status,)
                )
            return [_term_from_row(r) for r in rows]

        return await self._read(do)

    async def mark_dead(
        self, terminal_id: str, *, exit_code: int | None = None, exit_signal: int | None = None
    ) -> bool:
        now = time.time()

        def do(s: Session) -> bool:
            s.execute(
                "UPDATE terminals SET status = 'dead', exit_code = ?, exit_signal = ?, updated_at = ? WHERE id = ?",
                (exit_code, exit_signal, now, terminal_id),
            )
            return s.query_one("SELECT 1 FROM terminals WHERE id = ?", (terminal_id,)) is not None

        return await self._write(do)

    async def delete(self, terminal_id: str) -> bool:
        def do(s: Session) -> bool:
            return s.execute("DELETE FROM terminals WHERE id = ?", (terminal_id,)) > 0

        return await self._write(do)


# -- tasks -------------------------------------------------------------------------------

_TASK_COLS = tuple(TaskRecord.__struct_fields__)
_TASK_SELECT = f"SELECT {', '.join(_TASK_COLS)} FROM tasks"
_TASK_BOOL = {"requires_approval"}
_TASK_JSON = {"extra"}


def _task_value(name: str, v: Any) -> Any:
    if name in _TASK_BOOL:
        return int(bool(v))
    if name in _TASK_JSON:
        return _dumps(v if v is not None else {})
    return v


def _task_from_row(r: Row) -> TaskRecord:
    d: dict[str, Any] = {}
    for name, v in zip(_TASK_COLS, r, strict=True):
        if name in _TASK_BOOL:
            v = bool(v)
        elif name in _TASK_JSON:
            v = _loads(v) or {}
        d[name] = v
    return msgspec.convert(d, TaskRecord, strict=False)


class Tasks(_Repo):
    async def insert(self, task: TaskRecord) -> TaskRecord:
        now = time.time()
        task = msgspec.structs.replace(task, created_at=task.created_at or now, updated_at=now)
        params = [_task_value(n, getattr(task, n)) for n in _TASK_COLS]
        sql = f"INSERT INTO tasks ({', '.join(_TASK_COLS)}) VALUES ({', '.join('?' for _ in _TASK_COLS)})"

        def do(s: Session) -> TaskRecord:
            try:
                s.execute(sql, params)
            except Exception as e:
                if not s.is_duplicate_key(e):
                    raise
                existing = s.query_one(_TASK_SELECT + " WHERE id = ?", (task.id,))
                # A retry after a lost connection finds the row its first attempt wrote.
                if existing is not None and _task_from_row(existing) == task:
                    return task
                raise StoreConflict(
                    f"task already exists: {task.id}", details={"id": task.id}
                ) from None
            return task

        return await self._write(do)

    async def update(self, task_id: str, **fields: Any) -> TaskRecord:
        bad = set(fields) - TASK_FIELDS
        if bad or "id" in fields:
            raise ValueError(
                f"unknown or read-only task fields: {sorted(bad | ({'id'} & set(fields)))}"
            )
        fields.setdefault("updated_at", time.time())
        names = sorted(fields)
        sets = ", ".join(f"{n} = ?" for n in names)
        params = [_task_value(n, fields[n]) for n in names] + [task_id]

        def do(s: Session) -> TaskRecord:
            s.execute(f"UPDATE tasks SET {sets} WHERE id = ?", params)
            r = s.query_one(_TASK_SELECT + " WHERE id = ?", (task_id,))
            if r is None:
                raise StoreNotFound(f"task not found: {task_id}", details={"id": task_id})
            return _task_from_row(r)

        return await self._write(do)

    async def get(self, task_id: str) -> TaskRecord | None:
        def do(s: Session) -> TaskRecord | None:
            r = s.query_one(_TASK_SELECT + " WHERE id = ?", (task_id,))
            return _task_from_row(r) if r else None

        return await self._read(do)

    async def list(self, state: str | None = None) -> builtins.list[TaskRecord]:
        if state is None:
            return await self.list_by_state(())
        return await self.list_by_state((state,))

    async def list_by_state(
        self, states: builtins.list[str] | tuple[str, ...]
    ) -> builtins.list[TaskRecord]:
        states = tuple(states)

        def do(s: Session) -> builtins.list[TaskRecord]:
            if not states:
                rows = s.query(_TASK_SELECT + " ORDER BY created_at, id")
            else:
                marks = ", ".join("?" for _ in states)
                rows = s.query(
                    _TASK_SELECT + f" WHERE state IN ({marks}) ORDER BY created_at, id", states
                )
            return [_task_from_row(r) for r in rows]

        return await self._read(do)

    async def delete(self, task_id: str) -> bool:
        def do(s: Session) -> bool:
            # Explicit child deletes: FK cascades are not guaranteed on every MySQL engine.
            s.execute("DELETE FROM task_events WHERE task_id = ?", (task_id,))
            s.execute("DELETE FROM agent_runs WHERE task_id = ?", (task_id,))
            return s.execute("DELETE FROM tasks WHERE id = ?", (task_id,)) > 0

        return await self._write(do)


# -- task events -------------------------------------------------------------------------


class TaskEvents(_Repo):
    async def append(
        self, task_id: str, kind: str, data: dict[str, Any] | None = None
    ) -> TaskEventRecord:
        uid = uuid.uuid4().hex
        now = time.time()
        payload = data or {}
        text = _dumps(payload)

        def do(s: Session) -> TaskEventRecord:
            try:
                new_id = s.insert(
                    "INSERT INTO task_events (uid, task_id, kind, data, created_at) VALUES (?, ?, ?, ?, ?)",
                    (uid, task_id, kind, text, now),
                )
            except Exception as e:
                if s.is_duplicate_key(e):
                    r = s.query_one("SELECT id FROM task_events WHERE uid = ?", (uid,))
                    if r is not None:
                        new_id = int(r[0])
                    else:
                        raise
                elif s.is_foreign_key_error(e):
                    raise StoreNotFound(
                        f"task not found: {task_id}", details={"id": task_id}
                    ) from None
                else:
                    raise
            return TaskEventRecord(
                id=new_id, task_id=task_id, kind=kind, data=payload, created_at=now
            )

        return await self._write(do)

    async def list(
        self, task_id: str, *, since_id: int = 0, limit: int = 1000
    ) -> builtins.list[TaskEventRecord]:
        def do(s: Session) -> builtins.list[TaskEventRecord]:
            rows = s.query(
                "SELECT id, task_id, kind, data, created_at FROM task_events "
                "WHERE task_id = ? AND id > ? ORDER BY id LIMIT ?",
                (task_id, since_id, limit),
            )
            return [
                TaskEventRecord(
                    id=int(r[0]),
                    task_id=str(r[1]),
                    kind=str(r[2]),
                    data=_loads(r[3]) or {},
                    created_at=float(r[4]),
                )
                for r in rows
            ]

        return await self._read(do)


# -- agent runs --------------------------------------------------------------------------

_RUN_COLS = tuple(AgentRunRecord.__struct_fields__)
_RUN_SELECT = f"SELECT {', '.join(_RUN_COLS)} FROM agent_runs"


def _run_value(name: str, v: Any) -> Any:
    return _dumps(v if v is not None else {}) if name == "extra" else v


def _run_from_row(r: Row) -> AgentRunRecord:
    d = {n: (_loads(v) or {}) if n == "extra" else v for n, v in zip(_RUN_COLS, r, strict=True)}
    return msgspec.convert(d, AgentRunRecord, strict=False)


class AgentRuns(_Repo):
    async def insert(self, run: AgentRunRecord) -> AgentRunRecord:
        now = time.time()
        run = msgspec.structs.replace(
            run, id=run.id or uuid.uuid4().hex, started_at=run.started_at or now, updated_at=now
        )
        params = [_run_value(n, getattr(run, n)) for n in _RUN_COLS]
        sql = f"INSERT INTO agent_runs ({', '.join(_RUN_COLS)}) VALUES ({', '.join('?' for _ in _RUN_COLS)})"

        def do(s: Session) -> AgentRunRecord:
            try:
                s.execute(sql, params)
            except Exception as e:
                if s.is_duplicate_key(e):
                    existing = s.query_one(_RUN_SELECT + " WHERE id = ?", (run.id,))
                    if existing is not None and _run_from_row(existing) == run:
                        return run
                    raise StoreConflict(f"agent run already exists: {run.id}") from None
                if s.is_foreign_key_error(e):
                    raise StoreNotFound(
                        f"task not found: {run.task_id}", details={"id": run.task_id}
                    ) from None
                raise
            return run

        return await self._write(do)

    async def update(self, run_id: str, **fields: Any) -> AgentRunRecord:
        bad = set(fields) - AGENT_RUN_FIELDS
        if bad or "id" in fields or "task_id" in fields:
            raise ValueError(
                f"unknown or read-only agent run fields: {sorted(set(fields) - (AGENT_RUN_FIELDS - {'id', 'task_id'}))}"
            )
        fields.setdefault("updated_at", time.time())
        names = sorted(fields)
        sets = ", ".join(f"{n} = ?" for n in names)
        params = [_run_value(n, fields[n]) for n in names] + [run_id]

        def do(s: Session) -> AgentRunRecord:
            s.execute(f"UPDATE agent_runs SET {sets} WHERE id = ?", params)
            r = s.query_one(_RUN_SELECT + " WHERE id = ?", (run_id,))
            if r is None:
                raise StoreNotFound(f"agent run not found: {run_id}", details={"id": run_id})
            return _run_from_row(r)

        return await self._write(do)

    async def get(self, run_id: str) -> AgentRunRecord | None:
        def do(s: Session) -> AgentRunRecord | None:
            r = s.query_one(_RUN_SELECT + " WHERE id = ?", (run_id,))
            return _run_from_row(r) if r else None

        return await self._read(do)

    async def list(self, task_id: str) -> builtins.list[AgentRunRecord]:
        def do(s: Session) -> builtins.list[AgentRunRecord]:
            rows = s.query(
                _RUN_SELECT + " WHERE task_id = ? ORDER BY attempt, started_at", (task_id,)
            )
            return [_run_from_row(r) for r in rows]

        return await self._read(do)


# -- profile usage -----------------------------------------------------------------------


class Usage(_Repo):
    async def save(self, profile_id: str, usage: dict[str, Any] | msgspec.Struct) -> None:
        await self.save_many({profile_id: usage})

    async def save_many(self, usage: dict[str, dict[str, Any] | msgspec.Struct]) -> None:
        now = time.time()
        rows = [(pid, _dumps(_as_dict(u)), now) for pid, u in usage.items()]

        def do(s: Session) -> None:
            sql = s.dialect.upsert(
                "profile_usage", ("profile_id", "data", "updated_at"), ("profile_id",)
            )
            for row in rows:
                s.execute(sql, row)

        if rows:
            await self._write(do)

    async def load(self, profile_id: str) -> dict[str, Any] | None:
        def do(s: Session) -> dict[str, Any] | None:
            r = s.query_one("SELECT data FROM profile_usage WHERE profile_id = ?", (profile_id,))
            return _loads(r[0]) if r else None

        return await self._read(do)

    async def load_all(self) -> dict[str, dict[str, Any]]:
        def do(s: Session) -> dict[str, dict[str, Any]]:
            rows = s.query("SELECT profile_id, data FROM profile_usage ORDER BY profile_id")
            return {str(r[0]): _loads(r[1]) for r in rows}

        return await self._read(do)


# -- audit events ------------------------------------------------------------------------


class AuditEvents(_Repo):
    async def append(
        self, topic: str, data: dict[str, Any] | None = None, *, subject: str = ""
    ) -> AuditEventRecord:
        uid = uuid.uuid4().hex
        now = time.time()
        payload = data or {}
        text = _dumps(payload)

        def do(s: Session) -> AuditEventRecord:
            try:
                new_id = s.insert(
                    "INSERT INTO events (uid, ts, topic, subject, data) VALUES (?, ?, ?, ?, ?)",
                    (uid, now, topic, subject, text),
                )
            except Exception as e:
                r = (
                    s.query_one("SELECT id FROM events WHERE uid = ?", (uid,))
                    if s.is_duplicate_key(e)
                    else None
                )
                if r is None:
                    raise
                new_id = int(r[0])
            return AuditEventRecord(id=new_id, ts=now, topic=topic, subject=subject, data=payload)

        return await self._write(do)

    async def list(
        self,
        *,
        topic_prefix: str = "",
        subject: str | None = None,
        since_id: int = 0,
        limit: int = 1000,
    ) -> builtins.list[AuditEventRecord]:
        where = ["id > ?"]
        params: builtins.list[Any] = [since_id]
        if topic_prefix:
            where.append("topic LIKE ? ESCAPE '!'")
            params.append(_like_prefix(topic_prefix))
        if subject is not None:
            where.append("subject = ?")
            params.append(subject)
        params.append(limit)
        sql = f"SELECT id, ts, topic, subject, data FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT ?"

        def do(s: Session) -> builtins.list[AuditEventRecord]:
            return [
                AuditEventRecord(
                    id=int(r[0]),
                    ts=float(r[1]),
                    topic=str(r[2]),
                    subject=str(r[3]),
                    data=_loads(r[4]) or {},
                )
                for r in s.query(sql, params)
            ]

        return await self._read(do)


# -- settings ----------------------------------------------------------------------------


class Settings(_Repo):
    async def get(self, name: str, default: Any = None) -> Any:
        def do(s: Session) -> Any:
            r = s.query_one("SELECT value FROM settings WHERE name = ?", (name,))
            return _loads(r[0]) if r else default

        return await self._read(do)

    async def set(self, name: str, value: Any) -> None:
        row = (name, _dumps(value), time.time())

        def do(s: Session) -> None:
            s.execute(s.dialect.upsert("settings", ("name", "value", "updated_at"), ("name",)), row)

        await self._write(do)

    async def delete(self, name: str) -> bool:
        def do(s: Session) -> bool:
            return s.execute("DELETE FROM settings WHERE name = ?", (name,)) > 0

        return await self._write(do)
