"""PtyPool: capacity, handle lookup, release, spawn failures with their reasons."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio
import trio.testing

from tundra.sessions.errors import PtyAtCapacity, PtyHandleNotFound, PtySpawnFailed, SpawnReason
from tundra.sessions.pool import PtyPool


async def test_at_capacity_then_slot_freed_after_kill() -> None:
    pool = PtyPool(2)
    a = await pool.spawn(["sleep", "100"])
    await pool.spawn(["sleep", "100"])
    assert pool.active_count == 2
    with pytest.raises(PtyAtCapacity) as ei:
        await pool.spawn(["sleep", "100"])
    assert str(ei.value) == "pty pool is at capacity (2)"
    assert ei.value.code == "pty.at_capacity"
    await pool.kill(a.terminal_id, grace=0.5)
    assert a.exit_status == (None, 1)  # SIGHUP
    c = await pool.spawn(["sleep", "100"])
    assert pool.active_count == 2
    assert pool.stats()["spawned"] == 3 and pool.stats()["released"] == 1
    for h in pool.handles():
        await pool.kill(h.terminal_id, grace=0.5)
    assert pool.active_count == 0
    assert c.exited


async def test_handle_not_found_and_release_is_idempotent() -> None:
    pool = PtyPool(1)
    bogus = "0b5e6f2e-0000-4000-8000-000000000000"
    with pytest.raises(PtyHandleNotFound, match=f"^pty handle not found: {bogus}$"):
        pool.get(bogus)
    with pytest.raises(PtyHandleNotFound):
        await pool.kill(bogus)
    h = await pool.spawn(["sleep", "100"])
    await pool.kill(h.terminal_id, grace=0.5)
    assert pool.release(h.terminal_id) is False
    assert pool.release(h.terminal_id) is False
    assert pool.active_count == 0


async def test_queue_when_full_waits_for_a_slot() -> None:
    pool = PtyPool(1, queue_when_full=True, queue_timeout=30)
    h = await pool.spawn(["sleep", "100"])
    got: list[str] = []
    async with trio.open_nursery() as n:

        async def second() -> None:
            p = await pool.spawn(["sleep", "100"])
            got.append(p.terminal_id)

        n.start_soon(second)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        await pool.kill(h.terminal_id, grace=0.1)
    assert len(got) == 1
    pool.queue_timeout = 0.2
    with pytest.raises(PtyAtCapacity):
        await pool.spawn(["sleep", "100"])
    await pool.kill(got[0], grace=0.1)


@pytest.mark.parametrize(
    ("case", "reason", "text"),
    [
        ("missing", SpawnReason.NOT_FOUND, "not found in PATH"),
        ("noexec", SpawnReason.NOT_EXECUTABLE, "not executable"),
        ("cwd", SpawnReason.CWD_MISSING, "cwd missing"),
        ("badexe", SpawnReason.EXEC_ERROR, "exec error"),
    ],
)
async def test_spawn_failed_reasons(tmp_path: Path, case: str, reason: str, text: str) -> None:
    pool = PtyPool(2)
    noexec = tmp_path / "script.sh"
    noexec.write_text("#!/bin/sh\necho hi\n")
    badexe = tmp_path / "garbage"
    badexe.write_bytes(b"\x7fELF\x00garbage")
    badexe.chmod(badexe.stat().st_mode | stat.S_IXUSR)
    argv, cwd = {
        "missing": (["definitely-not-a-command-xyz"], None),
        "noexec": ([str(noexec)], None),
        "cwd": (["sh"], str(tmp_path / "gone")),
        "badexe": ([str(badexe)], None),
    }[case]
    with pytest.raises(PtySpawnFailed) as ei:
        await pool.spawn(argv, cwd=cwd)
    assert ei.value.reason == reason
    assert str(ei.value).startswith("pty spawn failed: ")
    assert text in str(ei.value)
    assert pool.active_count == 0 and pool.failed == 1


def test_spawn_failed_out_of_fds(tmp_path: Path) -> None:
    # RLIMIT_NOFILE is per process: lower it in a child interpreter, not in pytest.
    script = textwrap.dedent(
        """
        import os, resource
        from tundra.sessions.process import spawn_pty
        from tundra.sessions.errors import PtySpawnFailed
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        hold = []
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        try:
            while True:
                hold.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        try:
            spawn_pty(["sh"], terminal_id="t")
        except PtySpawnFailed as e:
            print(e.reason, "|", e)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.stdout.startswith("resources | pty spawn failed: out of PTYs/fds"), out
