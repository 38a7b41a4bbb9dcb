"""Scheduling: ordering (lane > priority > age), limits, PTY pool, pause/drain, per-repo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from tests.support import wait_for
from tests.tasks.fakes import FakeLauncher
from tests.workspace.gitrepo import make_repo
from tundra.config.schema import AgentsConfig
from tundra.tasks.api import TaskAddParams
from tundra.tasks.model import Task
from tundra.tasks.scheduler import Limits, capacity_left, pick_next
from tundra.tasks.service import TaskService
from tundra.tasks.store import MemoryTaskStore


def mk(tid: str, **kw: Any) -> Task:
    base: dict[str, Any] = dict(
        title=tid, prompt="p", repo="/r", base_branch="main", preset="shell"
    )
    base.update(kw)
    return Task(id=tid, **base)


def test_pick_orders_by_lane_then_priority_then_age() -> None:
    tasks = [
        mk("a", lane="experimental", priority=100, created_at=1),
        mk("b", lane="standard", priority=1, created_at=3),
        mk("c", lane="standard", priority=5, created_at=4),
        mk("d", lane="standard", priority=5, created_at=2),
        mk("e", lane="critical", priority=0, created_at=9),
    ]
    lim = Limits(max_concurrent=10)
    order = []
    pool = list(tasks)
    while (t := pick_next(pool, [], lim, now=100)) is not None:
        order.append(t.id)
        pool.remove(t)
    assert order == ["e", "d", "c", "b", "a"]


def test_pick_skips_held_backoff_non_queued_and_full_repos() -> None:
    tasks = [
        mk("held", held=True),
        mk("later", not_before=50),
        mk("run", state="running"),
        mk("busy", repo="/busy"),
        mk("ok", created_at=5),
    ]
    running = [mk("x", repo="/busy", state="running")]
    lim = Limits(max_concurrent=10, per_repo_limit=1)
    assert pick_next(tasks, running, lim, now=10).id == "ok"  # type: ignore[union-attr]
    assert pick_next(tasks[:4], running, lim, now=10) is None
    assert pick_next(tasks[:4], running, lim, now=60).id == "later"  # type: ignore[union-attr]


def test_capacity_is_bounded_by_max_concurrent_and_pty_pool() -> None:
    lim = Limits(max_concurrent=8)
    assert capacity_left(lim, running=0, free_ptys=3) == 3
    assert capacity_left(lim, running=7, free_ptys=3) == 1
    assert capacity_left(lim, running=8, free_ptys=3) == 0
    assert capacity_left(lim, running=2, free_ptys=0) == 0


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "proj")


async def _service(
    tmp_path: Path, launcher: FakeLauncher, nursery: trio.Nursery, **cfg: Any
) -> TaskService:
    cfg.setdefault("default_preset", "shell")
    svc = TaskService(
        AgentsConfig(**cfg),
        worktrees_dir=tmp_path / "wt",
        logs_dir=tmp_path / "logs",
        store=MemoryTaskStore(),
        launcher=launcher,
    )
    await nursery.start(svc.serve)
    return svc


async def test_never_beyond_pty_pool_and_all_finish(tmp_path: Path, repo: Path) -> None:
    launcher = FakeLauncher(slots=2)
    async with trio.open_nursery() as nursery:
        svc = await _service(tmp_path, launcher, nursery, max_concurrent=8)
        ids = [
            (await svc.add(TaskAddParams(title=f"t{i}", prompt="x", repo=str(repo)))).id
            for i in range(6)
        ]
        finished = 0
        while finished < 6:
            want = min(2, 6 - finished)
            await wait_for(lambda w=want: len(launcher.alive) == w, 20, message="pool full")
            # Let the scheduler run until idle: it must not dispatch beyond the pool.
            await trio.testing.wait_all_tasks_blocked()
            assert len(launcher.alive) == want
            launcher.alive[0].exit(0)
            finished += 1
        await wait_for(lambda: all(svc.resolve(i).state == "review" for i in ids), 20)
        assert launcher.peak == 2
        nursery.cancel_scope.cancel()


async def test_queue_pause_resume_drain_and_per_repo_limit(tmp_path: Path, repo: Path) -> None:
    other = make_repo(tmp_path / "other")
    launcher = FakeLauncher(slots=10)
    async with trio.open_nursery() as nursery:
        svc = await _service(tmp_path, launcher, nursery, max_concurrent=5, per_repo_limit=1)
        svc.pause_queue()
        a = await svc.add(TaskAddParams(title="a", prompt="x", repo=str(repo)))
        b = await svc.add(TaskAddParams(title="b", prompt="x", repo=str(repo)))
        c = await svc.add(TaskAddParams(title="c", prompt="x", repo=str(other)))
        await trio.testing.wait_all_tasks_blocked()
        assert launcher.procs == [] and svc.queue_status().queued == 3
        svc.resume_queue()
        await wait_for(lambda: len(launcher.procs) == 2, 20)
        assert {svc.resolve(a.id).state, svc.resolve(c.id).state} == {"running"}
        assert svc.resolve(b.id).state == "queued"  # same repo as a: per-repo limit 1
        async with trio.open_nursery() as inner:
            status: list[Any] = []

            async def drain() -> None:
                status.append(await svc.drain(timeout=20))

            inner.start_soon(drain)
            await wait_for(lambda: svc.queue_status().draining, 5)
            for p in launcher.alive:
                p.exit(0)
        assert status[0].running == 0 and status[0].draining
        assert svc.resolve(b.id).state == "queued", "draining dispatches nothing new"
        svc.resume_queue()
        await wait_for(lambda: svc.resolve(b.id).state == "running", 20)
        nursery.cancel_scope.cancel()


async def test_stuck_nudge_policy_types_nudge_text(tmp_path: Path, repo: Path) -> None:
    launcher = FakeLauncher(slots=2)
    async with trio.open_nursery() as nursery:
        svc = await _service(tmp_path, launcher, nursery, stuck_after_secs=0.3)
        t = await svc.add(TaskAddParams(title="a", prompt="x", repo=str(repo), agent="claude"))
        await wait_for(lambda: launcher.procs, 20)
        proc = launcher.procs[0]
        proc.emit(b"thinking...\n")
        await wait_for(lambda: b"continue" in bytes(proc.written), 20)
        kinds = [e.kind for e in await svc.history(t.id)]
        assert "stuck" in kinds and "nudge" not in kinds
        assert svc.resolve(t.id).state == "running"
        proc.exit(0)
        await wait_for(lambda: svc.resolve(t.id).state == "review", 20)
        nursery.cancel_scope.cancel()


async def test_service_not_ready_raises_lifecycle_error(tmp_path: Path) -> None:
    from tundra.tasks.errors import LifecycleError

    svc = TaskService(AgentsConfig(), worktrees_dir=tmp_path / "wt", logs_dir=tmp_path / "logs")
    with pytest.raises(LifecycleError, match="not ready"):
        await svc.add(TaskAddParams(title="x", repo=str(tmp_path)))
    with pytest.raises(LifecycleError):
        svc.resolve("abc")
    assert svc.status()["state"] == "starting"


async def test_reload_rereads_agents_file_and_keeps_old_presets_when_broken(
    tmp_path: Path,
) -> None:
    from tundra.config.schema import Config

    agents = tmp_path / "agents.toml"
    svc = TaskService(
        AgentsConfig(),
        worktrees_dir=tmp_path / "wt",
        logs_dir=tmp_path / "l",
        agents_file=agents,
        launcher=FakeLauncher(slots=1),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.serve)
        assert "mine" not in svc.registry.names()  # type: ignore[union-attr]
        agents.write_text('[presets.mine]\ncommand = ["x"]\n')
        svc.reload(Config(agents=AgentsConfig(max_concurrent=2)))
        await wait_for(lambda: "mine" in svc.registry.names(), 10)  # type: ignore[union-attr]
        assert svc.queue_status().max_concurrent == 2
        agents.write_text("[presets.mine\n")
        svc.reload(Config())
        await wait_for(lambda: svc.last_error and "invalid agents file" in svc.last_error, 10)
        assert "mine" in svc.registry.names()  # type: ignore[union-attr]
        nursery.cancel_scope.cancel()


async def test_add_validates_params(tmp_path: Path, repo: Path) -> None:
    from tundra.agents.errors import RegistryError
    from tundra.errors import UsageError
    from tundra.workspace.errors import RepoError

    async with trio.open_nursery() as nursery:
        svc = await _service(tmp_path, FakeLauncher(slots=1), nursery)
        bad: list[tuple[dict[str, Any], type[Exception], str]] = [
            ({"title": " "}, UsageError, "title"),
            ({"lane": "urgent"}, UsageError, "unknown lane: urgent"),
            ({"repo": "relative/dir"}, UsageError, "absolute path"),
            ({"timeout_secs": -1}, UsageError, ">= 0"),
            ({"agent": "nope"}, RegistryError, "unknown agent preset: nope"),
            ({"base_branch": "nope"}, RepoError, "base branch not found: nope"),
            ({"repo": str(tmp_path)}, RepoError, "not a git repository"),
        ]
        for over, exc, msg in bad:
            params: dict[str, Any] = {"title": "t", "repo": str(repo), **over}
            with pytest.raises(exc, match=msg):
                await svc.add(TaskAddParams(**params))
        assert svc.tasks() == []
        nursery.cancel_scope.cancel()


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["critical", "standard", "experimental"]),
            st.integers(-3, 3),
            st.integers(0, 5),
            st.booleans(),
        ),
        max_size=12,
    )
)
def test_pick_next_is_the_best_eligible_task(specs: list[tuple[str, int, int, bool]]) -> None:
    from tundra.tasks.model import LANE_RANK

    tasks = [
        mk(f"t{i}", lane=lane, priority=prio, created_at=float(age), held=held)
        for i, (lane, prio, age, held) in enumerate(specs)
    ]
    got = pick_next(tasks, [], Limits(max_concurrent=1), now=0)
    eligible = [t for t in tasks if not t.held]
    if not eligible:
        assert got is None
        return
    assert got is not None and not got.held
    best = max(eligible, key=lambda t: (LANE_RANK[t.lane], t.priority, -t.created_at))
    assert (got.lane, got.priority, got.created_at) == (best.lane, best.priority, best.created_at)
