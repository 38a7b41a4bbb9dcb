"""The repository API, run against both engines (SQLite and MariaDB) by the ``store`` fixture."""

from __future__ import annotations

import msgspec
import pytest
import trio

from tundra.sessions.api import TerminalInfo
from tundra.store.api import AgentRunRecord, TaskRecord, TerminalRecord
from tundra.store.errors import StoreConflict, StoreNotFound
from tundra.store.store import Store


def _task(tid: str, **kw: object) -> TaskRecord:
    return TaskRecord(
        id=tid, title=f"title {tid}", prompt="fix the bug; 100% please", repo="/r", **kw
    )  # type: ignore[arg-type]


async def test_task_insert_get_roundtrips_every_field(store: Store) -> None:
    t = TaskRecord(
        id="t-1",
        title="Fix ünïcode",
        prompt="p" * 70_000,
        repo="/src/x",
        base_branch="dev",
        preset="claude",
        lane=2,
        priority=5,
        requires_approval=True,
        max_attempts=4,
        timeout_secs=12.5,
        state="queued",
        attempts=0,
        branch="task/t-1",
        worktree="/w/t-1",
        terminal_id=None,
        exit_code=None,
        result=None,
        started_at=None,
        finished_at=None,
        extra={"labels": ["a", "b"], "n": 1.5, "nested": {"x": None}},
    )
    stored = await store.tasks.insert(t)
    assert stored.created_at > 0 and stored.updated_at >= stored.created_at
    got = await store.tasks.get("t-1")
    assert got == stored
    assert await store.tasks.get("nope") is None


async def test_task_insert_duplicate_id_is_a_conflict(store: Store) -> None:
    await store.tasks.insert(_task("dup"))
    with pytest.raises(StoreConflict, match="task already exists: dup"):
        await store.tasks.insert(_task("dup", priority=9))


async def test_task_update_sets_fields_and_bumps_updated_at(store: Store) -> None:
    first = await store.tasks.insert(_task("u1"))
    new = await store.tasks.update(
        "u1",
        state="running",
        attempts=1,
        started_at=123.25,
        requires_approval=True,
        extra={"k": "v"},
    )
    assert (new.state, new.attempts, new.started_at, new.requires_approval, new.extra) == (
        "running",
        1,
        123.25,
        True,
        {"k": "v"},
    )
    assert new.updated_at >= first.updated_at
    assert new.title == first.title
    assert await store.tasks.get("u1") == new


async def test_task_update_unknown_task_or_field(store: Store) -> None:
    with pytest.raises(StoreNotFound, match="task not found: ghost"):
        await store.tasks.update("ghost", state="running")
    await store.tasks.insert(_task("f1"))
    with pytest.raises(ValueError, match="colour"):
        await store.tasks.update("f1", colour="red")
    with pytest.raises(ValueError):
        await store.tasks.update("f1", id="other")


async def test_task_list_and_list_by_state_oldest_first(store: Store) -> None:
    for i, state in enumerate(["queued", "running", "queued", "done"]):
        await store.tasks.insert(_task(f"l{i}", state=state, created_at=1000.0 + i))
    assert [t.id for t in await store.tasks.list()] == ["l0", "l1", "l2", "l3"]
    assert [t.id for t in await store.tasks.list("queued")] == ["l0", "l2"]
    assert [t.id for t in await store.tasks.list_by_state(["running", "done"])] == ["l1", "l3"]
    assert await store.tasks.list_by_state(["nothing"]) == []


async def test_task_events_append_only_in_order(store: Store) -> None:
    await store.tasks.insert(_task("e1"))
    await store.tasks.insert(_task("e2"))
    a = await store.task_events.append("e1", "state", {"from": "queued", "to": "running"})
    await store.task_events.append("e2", "note", {"text": "other"})
    b = await store.task_events.append("e1", "output", {"bytes": 10})
    assert b.id > a.id
    events = await store.task_events.list("e1")
    assert [(e.kind, e.data) for e in events] == [
        ("state", {"from": "queued", "to": "running"}),
        ("output", {"bytes": 10}),
    ]
    assert [e.id for e in await store.task_events.list("e1", since_id=a.id)] == [b.id]


async def test_task_event_for_unknown_task_is_not_found(store: Store) -> None:
    with pytest.raises(StoreNotFound):
        await store.task_events.append("missing", "state", {})


async def test_delete_task_removes_its_events_and_runs(store: Store) -> None:
    await store.tasks.insert(_task("d1"))
    await store.task_events.append("d1", "state", {})
    await store.agent_runs.insert(AgentRunRecord(id="r1", task_id="d1"))
    assert await store.tasks.delete("d1") is True
    assert await store.tasks.get("d1") is None
    assert await store.task_events.list("d1") == []
    assert await store.agent_runs.list("d1") == []
    assert await store.tasks.delete("d1") is False


async def test_agent_runs_insert_update_list(store: Store) -> None:
    await store.tasks.insert(_task("a1"))
    r1 = await store.agent_runs.insert(
        AgentRunRecord(id="", task_id="a1", attempt=1, preset="claude")
    )
    assert r1.id and r1.started_at > 0
    r2 = await store.agent_runs.insert(
        AgentRunRecord(id="run-2", task_id="a1", attempt=2, extra={"x": 1})
    )
    done = await store.agent_runs.update(
        r1.id, state="failed", exit_code=2, finished_at=5.0, error="boom"
    )
    assert (done.state, done.exit_code, done.error) == ("failed", 2, "boom")
    assert [r.id for r in await store.agent_runs.list("a1")] == [r1.id, r2.id]
    assert (await store.agent_runs.get("run-2")) == r2
    with pytest.raises(StoreNotFound):
        await store.agent_runs.update("nope", state="x")
    with pytest.raises(StoreNotFound):
        await store.agent_runs.insert(AgentRunRecord(id="r9", task_id="no-task"))


async def test_terminals_upsert_from_struct_or_dict_and_mark_dead(store: Store) -> None:
    # The real contract type: the test breaks if the terminals and store shapes drift apart.
    info = TerminalInfo(
        id="term-1",
        name="build",
        argv=["bash", "-lc", "make"],
        cwd="/src",
        pid=10,
        pgid=10,
        created_at=100.0,
        last_activity=101.5,
        rows=40,
        cols=120,
        persistent=False,
        status="active",
        disconnected_since=None,
        exit_code=None,
        exit_signal=None,
        clients=2,
        offset=99,
        start_offset=0,
    )
    await store.terminals.upsert(info)
    await store.terminals.upsert(
        {
            "id": "term-2",
            "argv": ["sh"],
            "created_at": 200.0,
            "status": "disconnected",
            "disconnected_since": 201.0,
        }
    )
    got = await store.terminals.get("term-1")
    assert got is not None
    assert (got.name, got.argv, got.rows, got.cols, got.persistent, got.pid) == (
        "build",
        ["bash", "-lc", "make"],
        40,
        120,
        False,
        10,
    )
    # Upsert replaces the row.
    await store.terminals.upsert(
        msgspec.structs.replace(info, status="disconnected", disconnected_since=150.0)
    )
    got = await store.terminals.get("term-1")
    assert got is not None and got.status == "disconnected" and got.disconnected_since == 150.0
    assert await store.terminals.mark_dead("term-1", exit_code=None, exit_signal=9) is True
    assert await store.terminals.mark_dead("ghost") is False
    dead = await store.terminals.list(status="dead")
    assert [(t.id, t.exit_signal) for t in dead] == [("term-1", 9)]
    assert [t.id for t in await store.terminals.list()] == ["term-1", "term-2"]
    assert await store.terminals.delete("term-2") is True
    assert await store.terminals.get("term-2") is None
    assert isinstance(got, TerminalRecord)


async def test_usage_save_load(store: Store) -> None:
    assert await store.usage.load("p1") is None
    await store.usage.save("p1", {"total_requests": 1, "estimated_spend_usd": 0.25})
    await store.usage.save_many({"p1": {"total_requests": 2}, "p2": {"total_requests": 7}})
    assert await store.usage.load("p1") == {"total_requests": 2}
    assert await store.usage.load_all() == {
        "p1": {"total_requests": 2},
        "p2": {"total_requests": 7},
    }


async def test_audit_events_filter_by_topic_prefix_and_subject(store: Store) -> None:
    await store.events.append("task.state", {"to": "running"}, subject="t1")
    await store.events.append("task_x.other", {}, subject="t1")  # "_" is not a wildcard
    await store.events.append("terminal.exit", {"code": 0}, subject="term")
    e4 = await store.events.append("task.approved", {"by": "me"}, subject="t2")
    assert [e.topic for e in await store.events.list(topic_prefix="task.")] == [
        "task.state",
        "task.approved",
    ]
    assert [e.id for e in await store.events.list(subject="t2")] == [e4.id]
    assert len(await store.events.list()) == 4
    assert len(await store.events.list(limit=2)) == 2


async def test_settings_get_set_delete(store: Store) -> None:
    assert await store.settings.get("k", "dflt") == "dflt"
    await store.settings.set("k", {"a": [1, 2]})
    await store.settings.set("k", {"a": [3]})
    assert await store.settings.get("k") == {"a": [3]}
    assert await store.settings.delete("k") is True
    assert await store.settings.get("k") is None


async def test_concurrent_writers_all_land(store: Store) -> None:
    async def writer(n: int) -> None:
        for i in range(10):
            await store.tasks.insert(_task(f"c{n}-{i}"))

    async with trio.open_nursery() as nursery:
        for n in range(8):
            nursery.start_soon(writer, n)
    assert len(await store.tasks.list()) == 80
