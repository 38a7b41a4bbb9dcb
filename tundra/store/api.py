"""The typed surface of the store that other services code against (records + repositories).

Every method is async (trio); blocking database work runs in worker threads behind a
CapacityLimiter. Reach the store in the daemon through ``daemon.service("store")`` -- the
:class:`~tundra.store.service.StoreService` implements :class:`StoreAPI` -- or, outside the
daemon (tests, tools), through :func:`tundra.store.open_store`::

    async with open_store(sqlite_path=tmp_path / "t.sqlite3") as store:
        await store.tasks.insert(TaskRecord(id="t1", title="x", prompt="do x", ...))

Writes are durable when the call returns. A write made while the database is briefly down
waits (bounded by ``[store] write_retry_secs``) for the reconnect and is retried when that is
safe, or raises :class:`~tundra.store.errors.StoreUnavailable` -- it is never dropped.
Records are frozen msgspec Structs; change one with ``msgspec.structs.replace``.
"""

from __future__ import annotations

import builtins
from typing import Any, Literal, Protocol

import msgspec

__all__ = [
    "StoreState",
    "TerminalRecord",
    "TaskRecord",
    "TaskEventRecord",
    "AgentRunRecord",
    "AuditEventRecord",
    "TerminalRepository",
    "TaskRepository",
    "TaskEventRepository",
    "AgentRunRepository",
    "UsageRepository",
    "AuditEventRepository",
    "SettingsRepository",
    "StoreAPI",
    "TASK_FIELDS",
]

StoreState = Literal["ready", "connecting", "unavailable"]
"""``ready``: serving; ``connecting``: first connect/migrate in progress; ``unavailable``: the
database went away or cannot be reached (see ``last_error``); reconnect runs in the background."""


class TerminalRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A terminal's metadata, last status and exit (mirrors ``tundra.sessions.api.TerminalInfo``)."""

    id: str
    name: str = ""
    argv: list[str] = msgspec.field(default_factory=list)
    cwd: str = ""
    pid: int | None = None
    pgid: int | None = None
    created_at: float = 0.0
    last_activity: float = 0.0
    rows: int = 24
    cols: int = 80
    persistent: bool = True
    status: str = "active"
    """``active`` | ``disconnected`` | ``dead``."""
    disconnected_since: float | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    updated_at: float = 0.0
    """Set by the store on every upsert."""


class TaskRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One task (unit of work for an agent). The tasks service owns the state machine."""

    id: str
    title: str = ""
    prompt: str = ""
    repo: str = ""
    base_branch: str = "main"
    preset: str = ""
    lane: int = 1
    priority: int = 0
    requires_approval: bool = False
    max_attempts: int = 3
    timeout_secs: float = 3600.0
    state: str = "queued"
    attempts: int = 0
    branch: str | None = None
    worktree: str | None = None
    terminal_id: str | None = None
    exit_code: int | None = None
    result: str | None = None
    created_at: float = 0.0
    """0 = set by the store to now on insert."""
    updated_at: float = 0.0
    """Set by the store on insert and on every update."""
    started_at: float | None = None
    finished_at: float | None = None
    extra: dict[str, Any] = msgspec.field(default_factory=dict)


TASK_FIELDS: frozenset[str] = frozenset(TaskRecord.__struct_fields__)
"""Names accepted by :meth:`TaskRepository.update`."""


class TaskEventRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An append-only entry in a task's history (state changes, notes, approvals...)."""

    id: int
    """Monotonic per database: the order of append."""
    task_id: str
    kind: str
    data: dict[str, Any]
    created_at: float


class AgentRunRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt of an agent at a task."""

    id: str
    task_id: str
    attempt: int = 1
    preset: str = ""
    state: str = "running"
    terminal_id: str | None = None
    pid: int | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    error: str | None = None
    started_at: float = 0.0
    """0 = set by the store to now on insert."""
    finished_at: float | None = None
    updated_at: float = 0.0
    extra: dict[str, Any] = msgspec.field(default_factory=dict)


AGENT_RUN_FIELDS: frozenset[str] = frozenset(AgentRunRecord.__struct_fields__)


class AuditEventRecord(msgspec.Struct, frozen=True, kw_only=True):
    """An append-only audit log entry (``topic`` like the event bus: ``task.state``...)."""

    id: int
    ts: float
    topic: str
    subject: str
    """What it is about (a task id, terminal id, profile id...); may be empty."""
    data: dict[str, Any]


class TerminalRepository(Protocol):
    async def upsert(self, info: TerminalRecord | msgspec.Struct | dict[str, Any]) -> None:
        """Insert or replace a terminal's row. Accepts a ``TerminalInfo`` Struct or a dict
        (unknown keys are ignored, so ``TerminalInfo`` with extra fields fits)."""

    async def get(self, terminal_id: str) -> TerminalRecord | None: ...

    async def list(self, *, status: str | None = None) -> builtins.list[TerminalRecord]:
        """All terminals (or those with ``status``), oldest first."""

    async def mark_dead(
        self, terminal_id: str, *, exit_code: int | None = None, exit_signal: int | None = None
    ) -> bool:
        """Set status ``dead`` (+ exit); False if the terminal is unknown."""

    async def delete(self, terminal_id: str) -> bool: ...


class TaskRepository(Protocol):
    async def insert(self, task: TaskRecord) -> TaskRecord:
        """Store a new task; returns it with ``created_at``/``updated_at`` filled.
        Raises ``StoreConflict`` if the id exists."""

    async def update(self, task_id: str, **fields: Any) -> TaskRecord:
        """Set some fields (names from :data:`TASK_FIELDS`, ``id`` excluded); returns the
        new row. Raises ``StoreNotFound`` if the task is unknown, ValueError on a bad field."""

    async def get(self, task_id: str) -> TaskRecord | None: ...

    async def list(self, state: str | None = None) -> builtins.list[TaskRecord]:
        """All tasks (or those in ``state``), oldest first."""

    async def list_by_state(
        self, states: builtins.list[str] | tuple[str, ...]
    ) -> builtins.list[TaskRecord]:
        """Tasks in any of ``states`` (e.g. queued + running at daemon start), oldest first."""

    async def delete(self, task_id: str) -> bool:
        """Remove a task with its events and agent runs."""


class TaskEventRepository(Protocol):
    async def append(
        self, task_id: str, kind: str, data: dict[str, Any] | None = None
    ) -> TaskEventRecord: ...

    async def list(
        self, task_id: str, *, since_id: int = 0, limit: int = 1000
    ) -> builtins.list[TaskEventRecord]:
        """Events of a task with ``id > since_id``, in append order."""


class AgentRunRepository(Protocol):
    async def insert(self, run: AgentRunRecord) -> AgentRunRecord: ...

    async def update(self, run_id: str, **fields: Any) -> AgentRunRecord:
        """Raises ``StoreNotFound`` if unknown."""

    async def get(self, run_id: str) -> AgentRunRecord | None: ...

    async def list(self, task_id: str) -> builtins.list[AgentRunRecord]:
        """Runs of a task by attempt."""


class UsageRepository(Protocol):
    """Per-profile usage counters (the seed's ProfileUsage) as opaque JSON objects."""

    async def save(self, profile_id: str, usage: dict[str, Any] | msgspec.Struct) -> None: ...

    async def save_many(self, usage: dict[str, dict[str, Any] | msgspec.Struct]) -> None:
        """Save several profiles in one transaction."""

    async def load(self, profile_id: str) -> dict[str, Any] | None: ...

    async def load_all(self) -> dict[str, dict[str, Any]]: ...


class AuditEventRepository(Protocol):
    async def append(
        self, topic: str, data: dict[str, Any] | None = None, *, subject: str = ""
    ) -> AuditEventRecord: ...

    async def list(
        self,
        *,
        topic_prefix: str = "",
        subject: str | None = None,
        since_id: int = 0,
        limit: int = 1000,
    ) -> builtins.list[AuditEventRecord]: ...


class SettingsRepository(Protocol):
    """A small key -> JSON value table for state that must survive restarts."""

    async def get(self, name: str, default: Any = None) -> Any: ...

    async def set(self, name: str, value: Any) -> None: ...

    async def delete(self, name: str) -> bool: ...


class StoreAPI(Protocol):
    """What ``daemon.service("store")`` and :func:`tundra.store.open_store` give you."""

    @property
    def terminals(self) -> TerminalRepository: ...

    @property
    def tasks(self) -> TaskRepository: ...

    @property
    def task_events(self) -> TaskEventRepository: ...

    @property
    def agent_runs(self) -> AgentRunRepository: ...

    @property
    def usage(self) -> UsageRepository: ...

    @property
    def events(self) -> AuditEventRepository: ...

    @property
    def settings(self) -> SettingsRepository: ...

    @property
    def state(self) -> StoreState: ...

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Return once the store is ``ready``; raise ``StoreUnavailable`` after ``timeout``."""
