"""The tasks service inside a real daemon: IPC methods, the store, kill -9 recovery, capacity."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from tests.support import start_daemon, wait_for
from tests.tasks.harness import fake
from tests.workspace.gitrepo import git, make_repo
from tundra.agents.errors import ApprovalError, RegistryError
from tundra.tasks.errors import StateMachineError, TaskNotFoundError

CONFIG = """
[agents]
default_preset = "shell"
retry_backoff_secs = 0
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "proj")


async def test_task_lifecycle_over_ipc(repo: Path) -> None:
    async with start_daemon(config=CONFIG) as d, d.client() as c:
        t = await c.call(
            "task.add",
            {
                "title": "write a file",
                "prompt": fake("print", "hi", "write", "f.txt", "F", "env", "MY_TOKEN"),
                "repo": str(repo),
                "env": {"MY_TOKEN": "s3cret"},
            },
        )
        assert t["state"] == "queued" and len(t["id"]) == 8
        assert t["env"] == {"MY_TOKEN": "***"}, "env values never leave the daemon"

        async def in_review() -> bool:
            got = await c.call("task.get", {"id": t["id"][:5]})
            return bool(got["state"] == "review")

        await wait_for(in_review, 30, message="review")
        diff = await c.call("task.diff", {"id": t["id"]})
        assert "f.txt" in diff["stat"]
        with pytest.raises(
            StateMachineError, match="invalid transition: cannot apply retry in state review"
        ):
            await c.call("task.retry", {"id": t["id"]})
        done = await c.call("task.approve", {"id": t["id"]})
        assert done["state"] == "done"
        assert (repo / "f.txt").read_text() == "F\n"
        with pytest.raises(ApprovalError):
            await c.call("task.approve", {"id": t["id"]})
        hist = await c.call("task.history", {"id": t["id"]})
        assert [e["to_state"] for e in hist["events"] if e["kind"] == "state"] == [
            "queued",
            "running",
            "review",
            "done",
        ]
        chunks = []
        async with c.stream("task.logs", {"id": t["id"]}) as s:
            async for item in s:
                chunks.append(item["data"])
        assert b"hi" in b"".join(chunks)
        assert b"MY_TOKEN=s3cret" in b"".join(chunks), "the agent got the task env"
        [run] = (await c.call("task.runs", {"id": t["id"]}))["runs"]
        assert run["state"] == "succeeded" and run["exit_code"] == 0 and run["pid"] > 0
        assert run["id"] == f"{t['id']}-1" and run["finished_at"] >= run["started_at"]
        listed = await c.call("task.list", {"state": "done"})
        assert [x["id"] for x in listed["tasks"]] == [t["id"]]
        with pytest.raises(TaskNotFoundError):
            await c.call("task.get", {"id": "zzzz"})
        with pytest.raises(
            RegistryError, match="unknown agent preset: nope .*known presets: claude, codex"
        ):
            await c.call("task.add", {"title": "x", "repo": str(repo), "agent": "nope"})
        presets = await c.call("agents.list")
        assert {p["name"] for p in presets["presets"]} >= {
            "claude",
            "codex",
            "gemini",
            "opencode",
            "shell",
        }


async def test_daemon_killed_mid_run_task_comes_back_and_runs_again(
    repo: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "attempt-marker"
    # First attempt hangs (marker absent -> create it, then hang); the second one succeeds.
    prompt = (
        f"if [ -e {marker} ]; then {fake('write', 'ok.txt', 'second', 'exit', '0')}; "
        f"else touch {marker}; {fake('print', 'first', 'hang')}; fi"
    )
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(CONFIG)
    async with start_daemon(home=home) as d:
        t = await d.call("task.add", {"title": "survive", "prompt": prompt, "repo": str(repo)})
        await wait_for(marker.exists, 30, message="first attempt running")
        d.send_signal(signal.SIGKILL)
        await d.proc.wait()
    async with start_daemon(home=home) as d2, d2.client() as c:

        async def final() -> bool:
            got = await c.call("task.get", {"id": t["id"]})
            return bool(got["state"] == "review")

        await wait_for(final, 30, message="review after restart")
        hist = await c.call("task.history", {"id": t["id"]})
        states = [e["to_state"] for e in hist["events"] if e["kind"] == "state"]
        assert states == ["queued", "running", "interrupted", "queued", "running", "review"]
        got = await c.call("task.get", {"id": t["id"]})
        assert got["attempts"] == 2
        runs = (await c.call("task.runs", {"id": t["id"]}))["runs"]
        assert [(r["attempt"], r["state"]) for r in runs] == [(1, "interrupted"), (2, "succeeded")]
        assert git(repo, "show", f"tundra/{t['id']}:ok.txt") == "second\n"


async def test_capacity_20_tasks_max_3_running(repo: Path) -> None:
    config = CONFIG.replace("[agents]", "[agents]\nmax_concurrent = 3")
    async with start_daemon(config=config) as d, d.client() as c:
        ids = []
        for i in range(20):
            t = await c.call(
                "task.add",
                {
                    "title": f"t{i}",
                    "prompt": fake("sleep", "0.2", "write", f"f{i}.txt", str(i)),
                    "repo": str(repo),
                    "requires_approval": False,
                },
            )
            ids.append(t["id"])
        peak = 0
        with trio.fail_after(90):
            while True:
                tasks = (await c.call("task.list", {}))["tasks"]
                running = sum(1 for t in tasks if t["state"] == "running")
                peak = max(peak, running)
                assert running <= 3
                if all(t["state"] == "done" for t in tasks):
                    break
                await trio.sleep(0.05)
        assert peak >= 2

        async def idle() -> bool:
            st = await c.call("queue.status")
            assert st["max_concurrent"] == 3
            return bool(st["running"] == 0 and st["queued"] == 0)

        await wait_for(idle, 10, message="queue idle")
        # 20 auto-merges into the same base, serialised per repository: all landed.
        landed = git(repo, "ls-files", "f*.txt").split()
        assert sorted(landed) == sorted(f"f{i}.txt" for i in range(20))
        assert len(git(repo, "log", "--merges", "--oneline").splitlines()) == 20


async def _cli(
    d: object, *args: str, cwd: Path | None = None, stdin: bytes = b""
) -> tuple[int, str, str]:
    import sys

    proc = await trio.run_process(
        [sys.executable, "-m", "tundra", *args],
        env=d.env,  # type: ignore[attr-defined]
        cwd=cwd,
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


async def test_cli_add_ls_show_logs_approve_and_aliases(repo: Path) -> None:
    import json

    async with start_daemon(config=CONFIG) as d:
        rc, out, err = await _cli(
            d,
            "sling",
            "cli task",
            "--prompt",
            fake("print", "from-cli", "write", "c.txt", "C"),
            "--lane",
            "critical",
            "--priority",
            "5",
            "--json",
            cwd=repo,
        )
        assert rc == 0, err
        t = json.loads(out)
        assert t["lane"] == "critical" and t["priority"] == 5 and t["repo"] == str(repo)

        async def in_review() -> bool:
            got = await d.call("task.get", {"id": t["id"]})
            return bool(got["state"] == "review")

        await wait_for(in_review, 30)
        rc, out, _ = await _cli(d, "task", "ls")
        assert rc == 0 and t["id"] in out and "review" in out
        rc, out, _ = await _cli(d, "task", "show", t["id"][:4])
        assert "queued -> running" in out and "running -> review" in out
        assert "#1 succeeded" in out
        rc, out, _ = await _cli(d, "task", "logs", t["id"])
        assert "from-cli" in out
        rc, out, _ = await _cli(d, "task", "diff", t["id"], "--stat")
        assert "c.txt" in out
        rc, out, err = await _cli(d, "task", "retry", t["id"])
        assert rc == 1 and "invalid transition: cannot apply retry in state review" in err
        rc, out, err = await _cli(d, "done", t["id"])
        assert rc == 0, err
        assert (repo / "c.txt").read_text() == "C\n"
        rc, out, err = await _cli(d, "task", "add", "x", "--agent", "nope", "--repo", str(repo))
        assert rc == 1 and "unknown agent preset: nope" in err
        rc, out, _ = await _cli(d, "agents", "ls")
        assert rc == 0 and "shell" in out and "claude" in out
        rc, out, err = await _cli(d, "task", "attach", t["id"])
        assert rc == 1 and "no live agent terminal" in err

        # `task attach` is the terminal attach: typed input reaches the agent.
        rc, out, err = await _cli(
            d,
            "task",
            "add",
            "ask",
            "--prompt",
            fake("input", "answer?", "exit", "0"),
            "--json",
            cwd=repo,
        )
        ask = json.loads(out)

        async def live() -> bool:
            info = await d.call("task.attach-info", {"id": ask["id"]})
            return bool(info["alive"])

        await wait_for(live, 30)
        with trio.fail_after(30):
            rc, out, err = await _cli(d, "task", "attach", ask["id"], stdin=b"yes\n")
        assert rc == 0, err
        assert "got: yes" in out
        rc, out, _ = await _cli(d, "queue", "pause")
        assert "paused" in out


async def test_sigterm_with_running_agent_stops_promptly_and_task_is_requeued(
    repo: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(CONFIG)
    async with start_daemon(home=home) as d:
        t = await d.call(
            "task.add",
            {"title": "long", "prompt": fake("print", "busy", "hang"), "repo": str(repo)},
        )

        async def busy() -> bool:
            out = []
            async with d.client() as c, c.stream("task.logs", {"id": t["id"]}) as s:
                async for item in s:
                    out.append(item["data"])
            return b"busy" in b"".join(out)

        await wait_for(busy, 30, interval=0.05, message="agent output")
        with trio.fail_after(15):
            assert await d.stop(signal.SIGTERM) == 0
    async with start_daemon(home=home) as d2:
        got = await d2.call("task.get", {"id": t["id"]})
        assert got["state"] in ("queued", "running")
        hist = await d2.call("task.history", {"id": t["id"]})
        assert "interrupted" in [e["to_state"] for e in hist["events"]]
        out = []
        async with d2.client() as c, c.stream("task.logs", {"id": t["id"]}) as s:
            async for item in s:
                out.append(item["data"])
        assert b"busy" in b"".join(out), "the first attempt's output was saved at shutdown"
        await d2.call("task.cancel", {"id": t["id"]})
