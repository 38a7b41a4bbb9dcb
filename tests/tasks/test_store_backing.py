"""Tasks persisted through the real store (SQLite): fields round-trip, history is kept."""

from __future__ import annotations

from pathlib import Path

from tundra.store import open_store
from tundra.tasks.model import Task, TaskEvent
from tundra.tasks.store import RecordTaskStore


async def test_task_round_trips_through_sqlite_store(tmp_path: Path) -> None:
    async with open_store(sqlite_path=tmp_path / "t.sqlite3") as store:
        ts = RecordTaskStore(store)
        t = Task(
            id="abcd1234",
            title="t",
            prompt="p",
            repo="/r",
            base_branch="main",
            preset="shell",
            lane="critical",
            priority=3,
            held=True,
            not_before=12.5,
            env={"A": "1"},
            created_at=100.0,
            updated_at=100.0,
        )
        await ts.insert(t)
        t.state = "running"
        t.attempts = 1
        t.terminal_id = "term"
        await ts.save(t)
        await ts.append_event(
            TaskEvent(task_id=t.id, ts=1.0, kind="state", from_state="queued", to_state="running")
        )
        [back] = await ts.load_all()
        assert (
            back.lane == "critical" and back.priority == 3 and back.held and back.not_before == 12.5
        )
        assert back.env == {"A": "1"} and back.state == "running" and back.terminal_id == "term"
        [ev] = await ts.events(t.id)
        assert (ev.from_state, ev.to_state, ev.kind) == ("queued", "running", "state")
