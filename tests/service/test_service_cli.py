"""`tundra service ...`: dry-run rendering with the real interpreter, polite refusal without systemd."""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support import REPO, need, start_daemon
from tundra.service.platform import probe_manager


def _run(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TUNDRA_")}
    full.update(
        TUNDRA_HOME=str(home), PYTHONPATH=str(REPO), XDG_CONFIG_HOME=str(home / "xdg-config")
    )
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tundra", "service", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _plan(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_dry_run_install_renders_this_interpreter_and_home(short_dir: Path) -> None:
    home = short_dir
    sock = home / "s.sock"
    plan = _plan(
        _run(
            home, "install", "--dry-run", "--manager", "systemd", "--json", TUNDRA_SOCKET=str(sock)
        )
    )
    files = {Path(f["path"]).name: f for f in plan["files"]}
    assert set(files) == {"tundra-daemon.service", "tundra-daemon.socket", "tundra-bridge.service"}
    assert all(
        Path(f["path"]).parent == home / "xdg-config" / "systemd" / "user" for f in plan["files"]
    )
    service = files["tundra-daemon.service"]["content"]
    assert (
        f"ExecStart={os.path.abspath(sys.executable)} -X faulthandler -m tundra daemon" in service
    )
    assert f"Environment=TUNDRA_HOME={home}" in service
    assert f"Environment=TUNDRA_SOCKET={sock}" in service
    assert f"ListenStream={sock}" in files["tundra-daemon.socket"]["content"]
    assert plan["commands"][-1][:4] == ["systemctl", "--user", "enable", "--now"]
    assert any("loginctl enable-linger" in n for n in plan["notes"])
    # Nothing was written.
    assert not (home / "xdg-config").exists()


def test_dry_run_units_pass_systemd_analyze(tmp_path: Path, short_dir: Path) -> None:
    need(
        shutil.which("systemd-analyze") is not None, "systemd-analyze (apt: systemd) not installed"
    )
    home = short_dir
    plan = _plan(_run(home, "install", "--dry-run", "--manager", "systemd", "--json"))
    for f in plan["files"]:
        (tmp_path / Path(f["path"]).name).write_text(f["content"])
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    proc = subprocess.run(
        [
            "systemd-analyze",
            "--user",
            "verify",
            *(f"./{Path(f['path']).name}" for f in plan["files"]),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if "tundra-" in line] == []


def test_dry_run_launchd_plists_parse(short_dir: Path) -> None:
    home = short_dir
    plan = _plan(
        _run(home, "install", "--dry-run", "--manager", "launchd", "--json", "--no-bridge")
    )
    [plist_file] = plan["files"]
    assert plist_file["path"].endswith("Library/LaunchAgents/org.tundra.daemon.plist")
    job = plistlib.loads(plist_file["content"].encode())
    assert job["ProgramArguments"][0] == os.path.abspath(sys.executable)
    assert job["EnvironmentVariables"]["TUNDRA_HOME"] == str(home)
    assert job["Sockets"]["Listeners"]["SockPathMode"] == 0o600
    assert plan["commands"] == [
        ["launchctl", "bootstrap", f"gui/{os.getuid()}", plist_file["path"]]
    ]


def test_dry_run_uninstall_and_stop_list_their_steps(short_dir: Path) -> None:
    home = short_dir
    plan = _plan(_run(home, "uninstall", "--dry-run", "--manager", "systemd", "--json"))
    assert all(f["remove"] for f in plan["files"]) and len(plan["files"]) == 3
    assert plan["commands"][0][:4] == ["systemctl", "--user", "disable", "--now"]
    stop = _plan(_run(home, "stop", "--dry-run", "--manager", "systemd", "--json"))
    # The socket is stopped last, or a connection would start the daemon again.
    assert stop["commands"] == [
        [
            "systemctl",
            "--user",
            "stop",
            "tundra-bridge.service",
            "tundra-daemon.service",
            "tundra-daemon.socket",
        ]
    ]


def test_system_dry_run_runs_as_the_named_account(short_dir: Path) -> None:
    home = short_dir
    user = os.environ.get("USER") or "root"
    plan = _plan(
        _run(
            home,
            "install",
            "--system",
            "--run-as",
            user,
            "--dry-run",
            "--manager",
            "systemd",
            "--json",
        )
    )
    paths = [f["path"] for f in plan["files"]]
    assert all(p.startswith("/etc/systemd/system/") for p in paths)
    service = next(
        f["content"] for f in plan["files"] if f["path"].endswith("tundra-daemon.service")
    )
    assert f"User={user}" in service and "StateDirectory=tundra" in service
    assert plan["commands"][0] == ["systemctl", "daemon-reload"]


def test_install_without_a_service_manager_refuses_with_the_manual_alternative(
    short_dir: Path,
) -> None:
    if probe_manager("user").manager != "none":
        pytest.skip("a service manager runs here; the refusal path needs a host without one")
    home = short_dir
    proc = _run(home, "install")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot manage the tundra service: ")
    assert "hint: run it in the foreground instead: `tundra daemon`" in proc.stderr
    assert "--dry-run" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (home / "xdg-config").exists()  # refused before writing anything
    status = _run(home, "status")
    assert status.returncode == 1 and "cannot manage the tundra service" in status.stderr


def test_install_refuses_a_broken_config_but_stop_still_works(short_dir: Path) -> None:
    home = short_dir
    (home / "config.toml").write_text("[daemon]\nmax_ptys = 0\n")
    proc = _run(home, "install", "--dry-run", "--manager", "systemd")
    assert proc.returncode == 2
    assert "daemon.max_ptys: must be 1-100000, got 0" in proc.stderr
    stop = _plan(_run(home, "stop", "--dry-run", "--manager", "systemd", "--json"))
    assert stop["commands"][0][:3] == ["systemctl", "--user", "stop"]


async def test_install_notices_a_daemon_already_running_in_the_foreground(short_dir: Path) -> None:
    async with start_daemon(short_dir / "home") as d:
        proc = await trio.to_thread.run_sync(
            lambda: _run(
                d.home,
                "install",
                "--dry-run",
                "--manager",
                "systemd",
                "--json",
                TUNDRA_SOCKET=str(d.socket),
            )
        )
    plan = _plan(proc)
    assert any(
        f"daemon already running (pid {d.pid}" in n and "tundra daemon stop" in n
        for n in plan["notes"]
    )
