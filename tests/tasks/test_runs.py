"""Agent runs end to end in-process: real PTYs (TerminalService), real git, the fake agent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import wait_for
from tests.tasks.harness import add, fake, running_tasks
from tests.workspace.gitrepo import exists, git, make_repo
from tundra.agents.errors import ApprovalError
from tundra.tasks.errors import StateMachineError
from tundra.tasks.service import TaskService


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "proj")


def proc_state(pid: int | None) -> str:
    """The one-letter state of a process from /proc (T = stopped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def state_of(svc: TaskService, tid: str) -> str:
    return svc.resolve(tid).state


async def test_success_goes_to_review_with_uncommitted_work_committed(
    tmp_path: Path, repo: Path
) -> None:
    async with running_tasks(tmp_path) as svc:
        t = await add(svc, repo, fake("print", "working", "write", "out.txt", "agent", "exit", "0"))
        await wait_for(lambda: state_of(svc, t.id) == "review", 20, message="review")
        assert git(repo, "show", f"tundra/{t.id}:out.txt") == "agent\n"
        assert t.attempts == 1 and t.exit_code == 0
        d = await svc.diff(t.id)
        assert "out.txt" in d.stat
        with pytest.raises(
            StateMachineError, match="invalid transition: cannot apply start in state review"
        ):
            from tundra.tasks.state import next_state

            next_state(t.state, "start")
        worktree = t.worktree
        assert exists(worktree)
        done = await svc.approve(t.id[:4])
        assert done.state == "done"
        assert (repo / "out.txt").read_text() == "agent\n"
        assert t.worktree == "" and not exists(worktree)
        with pytest.raises(ApprovalError, match="not review"):
            await svc.approve(t.id)
        log = await svc.read_log(t)
        assert b"working" in log


async def test_agent_sees_task_env_and_runs_in_worktree(tmp_path: Path, repo: Path) -> None:
    async with running_tasks(tmp_path) as svc:
        t = await add(
            svc, repo, fake("env", "TUNDRA_TASK_ID", "write", "cwd.txt", "x", "exit", "0")
        )
        await wait_for(lambda: state_of(svc, t.id) == "review", 20)
        assert f"TUNDRA_TASK_ID={t.id}".encode() in await svc.read_log(t)
        assert t.worktree.endswith(f"worktrees/proj/{t.id}")


async def test_nonzero_exit_fails_with_output_tail_and_retries_up_to_max(
    tmp_path: Path, repo: Path
) -> None:
    async with running_tasks(tmp_path) as svc:
        t = await add(svc, repo, fake("print", "boom happened", "exit", "3"), max_attempts=2)
        await wait_for(lambda: t.state == "failed" and t.attempts == 2, 20, message="2 attempts")
        assert "exit code 3" in t.result and "boom happened" in t.result
        runs = await svc.runs(t.id)
        assert [(r.attempt, r.state, r.exit_code) for r in runs] == [
            (1, "failed", 3),
            (2, "failed", 3),
        ]
        events = [e.to_state for e in await svc.history(t.id) if e.kind == "state"]
        assert events == ["queued", "running", "failed", "queued", "running", "failed"]
        again = await svc.retry(t.id)
        assert again.state == "queued"


async def test_no_approval_and_no_changes_goes_done(tmp_path: Path, repo: Path) -> None:
    async with running_tasks(tmp_path) as svc:
        t = await add(svc, repo, fake("print", "nothing", "exit", "0"), requires_approval=False)
        await wait_for(lambda: state_of(svc, t.id) == "done", 20)
        assert t.result == "nothing to merge"


async def test_no_approval_with_changes_auto_merges(tmp_path: Path, repo: Path) -> None:
    async with running_tasks(tmp_path) as svc:
        t = await add(
            svc,
            repo,
            fake("write", "a.txt", "A", "commit", "agent commit"),
            requires_approval=False,
        )
        await wait_for(lambda: state_of(svc, t.id) == "done", 20)
        assert (repo / "a.txt").read_text() == "A\n"


async def test_timeout_kills_and_fails(tmp_path: Path, repo: Path) -> None:
    async with running_tasks(tmp_path, auto_restart=False) as svc:
        t = await add(svc, repo, fake("print", "start", "hang"), timeout_secs=1.0)
        await wait_for(lambda: state_of(svc, t.id) == "failed", 20)
        assert t.result.startswith("timed out after 1s")
        assert [r.state for r in await svc.runs(t.id)] == ["timeout"]


async def test_stuck_agent_is_detected_and_policy_applied(tmp_path: Path, repo: Path) -> None:
    async with running_tasks(tmp_path, auto_restart=False, stuck_after_secs=0.6) as svc:
        t = await add(svc, repo, fake("print", "thinking", "hang"))
        await wait_for(lambda: state_of(svc, t.id) == "failed", 20)
        kinds = [e.kind for e in await svc.history(t.id)]
        assert "stuck" in kinds
        assert t.result.startswith("stuck")


async def test_busy_loop_is_not_stuck(tmp_path: Path, repo: Path) -> None:
    async with running_tasks(tmp_path, auto_restart=False, stuck_after_secs=1.0) as svc:
        t = await add(svc, repo, fake("loop", "tick"), timeout_secs=3.0)
        await wait_for(lambda: state_of(svc, t.id) == "failed", 20)
        assert "stuck" not in [e.kind for e in await svc.history(t.id)]
        assert t.result.startswith("timed out")


async def test_cancel_kills_the_process_group(tmp_path: Path, repo: Path) -> None:
    pidfile = tmp_path / "child.pid"
    async with running_tasks(tmp_path) as svc:
        t = await add(svc, repo, fake("child", str(pidfile), "print", "ready", "hang"))
        await wait_for(lambda: pidfile.exists() and pidfile.read_text(), 20)
        child = int(pidfile.read_text())
        await wait_for(
            lambda: b"ready" in bytes(svc._runs[t.id].log) if t.id in svc._runs else False, 10
        )
        out = await svc.cancel(t.id)
        assert out.state == "cancelled"

        def gone() -> bool:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            # A zombie still answers kill(0); check its state.
            try:
                return Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"
            except FileNotFoundError:
                return True

        await wait_for(gone, 10, message="child of the agent killed")
        with pytest.raises(StateMachineError, match="cannot apply cancel in state cancelled"):
            await svc.cancel(t.id)


async def test_merge_conflict_aborts_and_marks_failed(tmp_path: Path, repo: Path) -> None:
    async with running_tasks(tmp_path) as svc:
        t = await add(svc, repo, fake("write", "README.md", "agent version", "exit", "0"))
        await wait_for(lambda: state_of(svc, t.id) == "review", 20)
        (repo / "README.md").write_text("user version\n")
        git(repo, "commit", "-qam", "user edit")
        with pytest.raises(ApprovalError, match="conflicts: README.md") as ei:
            await svc.approve(t.id)
        assert ei.value.details["files"] == ["README.md"]
        assert t.state == "failed" and "README.md" in t.result
        assert exists(t.worktree)
        assert (repo / "README.md").read_text() == "user version\n"


async def test_reject_requeues_with_reason_in_prompt(tmp_path: Path, repo: Path) -> None:
    async with running_tasks(tmp_path) as svc:
        t = await add(svc, repo, fake("write", "a.txt", "1", "exit", "0"), held=False)
        await wait_for(lambda: state_of(svc, t.id) == "review", 20)
        svc.pause_queue()
        r = await svc.reject(t.id, "use tabs", cancel=False)
        assert r.state == "queued" and "use tabs" in r.prompt
        with pytest.raises(ApprovalError, match="not review"):
            await svc.reject(t.id, "again", cancel=True)
        svc.resume_queue()
        await wait_for(lambda: state_of(svc, t.id) == "review", 20)
        assert t.attempts == 2
        c = await svc.reject(t.id, "no", cancel=True)
        assert c.state == "cancelled"


async def test_pause_and_resume_running_task(tmp_path: Path, repo: Path) -> None:
    async with running_tasks(tmp_path) as svc:
        t = await add(svc, repo, fake("input", "answer?", "exit", "0"))
        await wait_for(lambda: state_of(svc, t.id) == "running" and t.terminal_id, 20)
        await wait_for(lambda: svc._runs[t.id].record is not None, 10)
        pid = svc._runs[t.id].record.pid  # type: ignore[union-attr]
        await svc.pause(t.id)
        assert t.state == "waiting"
        await wait_for(lambda: proc_state(pid) == "T", 10, message="agent stopped (SIGSTOP)")
        await svc.resume(t.id)
        assert t.state == "running"
        await wait_for(lambda: proc_state(pid) != "T", 10, message="agent continued")
        await wait_for(
            lambda: b"answer?" in bytes(svc._runs[t.id].log) if t.id in svc._runs else False, 10
        )
        await svc.nudge(t.id, "yes")
        await wait_for(lambda: state_of(svc, t.id) == "review", 20)
        assert b"got: yes" in await svc.read_log(t)


async def test_held_task_waits_until_resumed(tmp_path: Path, repo: Path) -> None:
    async with running_tasks(tmp_path) as svc:
        t = await add(svc, repo, fake("exit", "0"), held=True)
        assert t.state == "queued" and t.held
        await svc.resume(t.id)
        await wait_for(lambda: state_of(svc, t.id) == "review", 20)


async def test_clean_refuses_unmerged_commits_without_force(tmp_path: Path, repo: Path) -> None:
    from tundra.workspace.errors import WorktreeError

    async with running_tasks(tmp_path) as svc:
        t = await add(svc, repo, fake("write", "a.txt", "1", "exit", "0"))
        await wait_for(lambda: state_of(svc, t.id) == "review", 20)
        await svc.cancel(t.id)
        with pytest.raises(WorktreeError, match="unmerged commit"):
            await svc.clean(t.id)
        wt = t.worktree
        assert exists(wt)
        await svc.clean(t.id, force=True)
        assert not exists(wt) and t.worktree == ""
        assert f"tundra/{t.id}" not in git(repo, "branch")


async def test_idle_marker_moves_to_waiting_and_back(tmp_path: Path, repo: Path) -> None:
    from tundra.agents.registry import load_registry

    agents = tmp_path / "agents.toml"
    agents.write_text(
        '[presets.asker]\ncommand = ["bash", "-lc", "{prompt}"]\nidle_markers = ["answer?"]\n'
        'stuck_after_secs = 3.0\nstuck_policy = "fail"\n'
    )
    async with running_tasks(tmp_path, registry=load_registry(agents)) as svc:
        t = await add(
            svc, repo, fake("input", "answer?", "sleep", "0.5", "exit", "0"), agent="asker"
        )
        await wait_for(lambda: state_of(svc, t.id) == "waiting", 20, message="waiting")
        await svc.nudge(t.id, "yes")
        await wait_for(lambda: state_of(svc, t.id) == "review", 20, message="review")
        states = [e.to_state for e in await svc.history(t.id) if e.kind == "state"]
        assert states[:4] == ["queued", "running", "waiting", "running"]


async def test_interrupted_run_resumes_the_agent_session(tmp_path: Path, repo: Path) -> None:
    from tundra.agents.registry import load_registry
    from tundra.tasks.store import MemoryTaskStore

    agents = tmp_path / "agents.toml"
    agents.write_text(
        '[presets.sess]\ncommand = ["bash", "-lc", "{prompt}"]\nresume = "session"\n'
        'resume_command = ["bash", "-lc", "echo resumed-{session_id} > resumed.txt"]\n'
        "session_id_pattern = 'session=(\\w+)'\n"
    )
    reg = load_registry(agents)
    store = MemoryTaskStore()
    async with running_tasks(tmp_path, store=store, registry=reg) as svc:
        t = await add(svc, repo, fake("print", "session=abc123", "hang"), agent="sess")
        await wait_for(lambda: t.session_id == "abc123", 20, message="session id captured")
        await wait_for(lambda: store.tasks[t.id].session_id == "abc123", 5)
    # The service stopped mid-run (as a daemon would): the store still says running.
    assert store.tasks[t.id].state == "running"
    async with running_tasks(tmp_path, store=store, registry=reg) as svc2:
        t2 = svc2.resolve(t.id)
        await wait_for(lambda: t2.state == "review", 20, message="resumed run finished")
        assert git(repo, "show", f"tundra/{t.id}:resumed.txt") == "resumed-abc123\n"
        notes = [e.message for e in await svc2.history(t.id) if e.kind == "note"]
        assert "resuming agent session abc123" in notes
