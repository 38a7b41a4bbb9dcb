"""The rendered daemon unit, executed the way systemd would: its ExecStart and Environment,
NOTIFY_SOCKET + WATCHDOG_USEC from WatchdogSec, SIGTERM to the main process only
(KillMode=mixed) within TimeoutStopSec, and exit status 2 (RestartPreventExitStatus) for a
broken config."""

from __future__ import annotations

import shlex
import shutil
import signal
import socket as stdsocket
import subprocess
import sys
from pathlib import Path

import msgspec
import trio

from tests.support import REPO, short_tempdir
from tundra.service.units import DAEMON_SERVICE, UnitContext, render_systemd


def _unit(home: Path, sock: Path) -> dict[str, list[str]]:
    ctx = UnitContext(
        scope="user",
        python=sys.executable,
        tundra_home=str(home),
        socket_path=str(sock),
        path_env="/usr/local/bin:/usr/bin:/bin",
        user_home="/nonexistent-home",  # no %h/%t: the values below are literal paths
        runtime_dir="/nonexistent-run",
    )
    text = render_systemd(msgspec.structs.replace(ctx, stop_timeout_secs=20))[DAEMON_SERVICE]
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def _exec_env(unit: dict[str, list[str]], notify: Path) -> tuple[list[str], dict[str, str]]:
    argv = shlex.split(unit["ExecStart"][0])
    env: dict[str, str] = {"PYTHONPATH": str(REPO)}  # the venv is not installed into site-packages
    for assignment in unit["Environment"]:
        key, value = shlex.split(assignment)[0].split("=", 1)
        env[key] = value
    env["NOTIFY_SOCKET"] = str(notify)
    env["WATCHDOG_USEC"] = str(int(unit["WatchdogSec"][0]) * 1_000_000)
    return argv, env


async def test_rendered_exec_start_runs_the_daemon_to_ready_and_stops_cleanly() -> None:
    base = short_tempdir("uc")
    notify_path = base / "n.sock"
    notify = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_DGRAM)
    await notify.bind(str(notify_path))
    unit = _unit(base / "home", base / "d.sock")
    argv, env = _exec_env(unit, notify_path)
    assert argv[1:] == ["-X", "faulthandler", "-m", "tundra", "daemon"]
    proc = await trio.lowlevel.open_process(
        argv,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        messages: list[str] = []
        with trio.fail_after(30):
            while "READY=1" not in messages:
                messages += (await notify.recv(65536)).decode().split("\n")
        assert "WATCHDOG=1" in messages or await _next_contains(notify, "WATCHDOG=1")
        assert (base / "d.sock").exists()  # TUNDRA_SOCKET from the unit was honoured
        # KillMode=mixed: SIGTERM to the main process; it must be done within TimeoutStopSec.
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(int(unit["TimeoutStopSec"][0])):
            code = await proc.wait()
        assert code == 0  # clean: Restart=on-failure does not restart it
        assert not (base / "d.sock").exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        notify.close()
        shutil.rmtree(base, ignore_errors=True)


async def _next_contains(notify: trio.socket.SocketType, item: str) -> bool:
    with trio.fail_after(40):
        while True:
            if item in (await notify.recv(65536)).decode().split("\n"):
                return True


async def test_a_broken_config_exits_with_the_no_restart_status() -> None:
    base = short_tempdir("uc")
    home = base / "home"
    home.mkdir()
    (home / "config.toml").write_text("[daemon]\nmax_ptys = 0\n")
    unit = _unit(home, base / "d.sock")
    argv, env = _exec_env(unit, base / "nobody-listens.sock")
    result = await trio.run_process(
        argv, env=env, capture_stdout=True, capture_stderr=True, check=False
    )
    assert str(result.returncode) in unit["RestartPreventExitStatus"]
    assert b"max_ptys" in result.stderr
    shutil.rmtree(base, ignore_errors=True)
