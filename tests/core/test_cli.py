"""CLI conventions: exit codes, --json, completion, no tracebacks for user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tundra.cli.main import main


def run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"TUNDRA_HOME": str(home), "TUNDRA_SOCKET": str(home / "d.sock"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "tundra", *args], env=env, capture_output=True, text=True, timeout=60)


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    r = run("no-such-command", home=tmp_path)
    assert r.returncode == 2 and "invalid choice" in r.stderr
    assert run(home=tmp_path).returncode == 2
    r = run("daemon", "--environment", "prod", home=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_version_json(tmp_path: Path) -> None:
    r = run("version", "--json", home=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["version"]


def test_ping_without_daemon_is_exit_1_with_hint_or_json(tmp_path: Path) -> None:
    r = run("ping", "--json", home=tmp_path)
    assert r.returncode == 1
    assert json.loads(r.stdout)["error"]["code"] == "daemon.unavailable"


def test_bash_completion_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    out = capsys.readouterr().out
    assert "complete -F _tundra_complete tundra" in out
    for word in ("daemon", "status", "ping", "config", "validate"):
        assert word in out
    bash = subprocess.run(["bash", "-n"], input=out, text=True, capture_output=True)
    assert bash.returncode == 0, bash.stderr


async def test_daemon_stop_waits_for_the_exit() -> None:


    from tests.support import start_daemon, tundra_cmd

    async with start_daemon() as d:
        codes: list[int] = []
        async with trio.open_nursery() as n:
            # Reap the daemon as its parent would, or it lingers as a zombie.
            n.start_soon(_reap, d.proc, codes)
            r = await trio.run_process(tundra_cmd("daemon", "stop"), env=d.env, capture_stdout=True,
                                       capture_stderr=True, check=False)
        assert r.returncode == 0, r.stderr
        assert f"daemon stopped (pid {d.pid})".encode() in r.stdout
        assert codes == [0]


async def _reap(proc: trio.Process, codes: list[int]) -> None:
    codes.append(await proc.wait())
