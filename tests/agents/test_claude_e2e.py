"""End to end with the real Claude Code CLI pointed at the fake Anthropic provider.

The provider answers the first tool-enabled request with a ``Write`` tool_use into the task's
worktree, then ``Done.``; the task must reach ``review`` with the file committed on
``tundra/<id>`` (the runner commits what the agent left uncommitted) and approve merges it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.fakes.fake_llm import FakeLLM
from tests.support import need, start_daemon, wait_for
from tests.workspace.gitrepo import git, make_repo


async def test_claude_preset_writes_file_reaches_review_and_merges(tmp_path: Path) -> None:
    need(shutil.which("claude"), "Claude Code CLI (npm install -g @anthropic-ai/claude-code)")
    repo = make_repo(tmp_path / "proj")
    claude_home = tmp_path / "claude-home"
    claude_home.mkdir()
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    with FakeLLM() as fake:
        fake.set_default({"text": "Done."})
        (home / "config.toml").write_text("[agents]\nretry_backoff_secs = 0\nmax_concurrent = 2\n")
        # The preset is data: point it at the fake provider through its base_url_env.
        (home / "config" / "agents.toml").write_text(
            f"""
[presets.claude]
base_url = "{fake.url}"
stuck_after_secs = 120
env = {{ CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC = "1", IS_SANDBOX = "1", ANTHROPIC_API_KEY = "dummy", ANTHROPIC_AUTH_TOKEN = "dummy", HOME = "{claude_home}" }}
"""
        )
        async with start_daemon(home=home) as d, d.client() as c:
            t = await c.call(
                "task.add",
                {
                    "title": "say hello",
                    "prompt": "Create hello.txt saying hello.",
                    "repo": str(repo),
                    "agent": "claude",
                    "held": True,
                    "max_attempts": 1,
                    "timeout_secs": 120,
                },
            )
            target = home / "data" / "worktrees" / "proj" / t["id"] / "hello.txt"
            fake.push(
                {
                    "match": {"has_tools": True, "has_tool_result": False},
                    "tool_use": {
                        "name": "Write",
                        "input": {"file_path": str(target), "content": "hello from claude\n"},
                    },
                }
            )
            await c.call("task.resume", {"id": t["id"]})

            async def settled() -> dict[str, object] | None:
                got = await c.call("task.get", {"id": t["id"]})
                return got if got["state"] in ("review", "failed", "done") else None

            got = await wait_for(settled, 120, interval=0.2, message="claude task to finish")
            assert got["state"] == "review", got.get("result")
            assert git(repo, "show", f"tundra/{t['id']}:hello.txt") == "hello from claude\n"
            done = await c.call("task.approve", {"id": t["id"]})
            assert done["state"] == "done"
            assert (repo / "hello.txt").read_text() == "hello from claude\n"
            assert any("/v1/messages" in str(r.get("path", "")) for r in fake.requests)
