"""The rendered systemd units and launchd plists: golden files, systemd-analyze, plistlib."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from tests.support import need
from tundra.service.units import (
    BRIDGE_SERVICE,
    DAEMON_SERVICE,
    DAEMON_SOCKET,
    UnitContext,
    render_launchd,
    render_systemd,
    stop_timeout_secs,
    template_context,
)

REPO = Path(__file__).resolve().parents[2]
SCOPES = ("user", "system")


def _unit_settings(text: str) -> dict[str, list[str]]:
    """Key -> values of a unit file (sections flattened; good enough for our keys)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize("scope", SCOPES)
def test_repository_units_are_the_rendered_templates(scope: str) -> None:
    rendered = render_systemd(template_context(scope))  # type: ignore[arg-type]
    for name, text in rendered.items():
        path = REPO / "systemd" / scope / name
        if os.environ.get("TUNDRA_UPDATE_GOLDEN"):
            path.write_text(text)
        assert path.read_text() == text, (
            f"{path} is stale: TUNDRA_UPDATE_GOLDEN=1 pytest {__file__}"
        )


@pytest.mark.parametrize("scope", SCOPES)
def test_repository_plists_are_the_rendered_templates(scope: str) -> None:
    rendered = render_launchd(template_context(scope, "launchd"))  # type: ignore[arg-type]
    for name, data in rendered.items():
        path = REPO / "launchd" / scope / name
        if os.environ.get("TUNDRA_UPDATE_GOLDEN"):
            path.write_bytes(data)
        assert path.read_bytes() == data, (
            f"{path} is stale: TUNDRA_UPDATE_GOLDEN=1 pytest {__file__}"
        )


def test_daemon_unit_has_the_supervision_contract() -> None:
    s = _unit_settings(render_systemd(template_context("user"))[DAEMON_SERVICE])
    assert s["Type"] == ["notify"]
    assert s["WatchdogSec"] == ["30"]
    assert s["Restart"] == ["on-failure"]
    assert s["RestartPreventExitStatus"] == ["2"]
    assert s["KillMode"] == ["mixed"]
    assert s["UMask"] == ["0077"]
    assert s["SyslogIdentifier"] == ["tundra-daemon"]
    assert s["StartLimitBurst"] == ["5"]
    assert "PYTHONUNBUFFERED=1" in s["Environment"]
    assert s["ExecStart"] == ["/usr/bin/python3 -X faulthandler -m tundra daemon"]
    # User units stay portable: the home and runtime dirs are specifiers.
    assert "TUNDRA_HOME=%h/.auto-tundra" in s["Environment"]
    assert "TUNDRA_SOCKET=%t/auto-tundra/daemon.sock" in s["Environment"]
    assert s["RuntimeDirectory"] == ["auto-tundra"]
    # PTY children inherit the sandbox: nothing that implies NoNewPrivileges.
    for forbidden in (
        "NoNewPrivileges",
        "SystemCallFilter",
        "RestrictAddressFamilies",
        "PrivateDevices",
        "ProtectKernelTunables",
        "RestrictSUIDSGID",
        "MemoryDenyWriteExecute",
        "LockPersonality",
        "ProtectSystem",
        "PrivateTmp",
    ):
        assert forbidden not in s, forbidden


def test_system_units_run_as_the_account_with_state_and_logs_dirs() -> None:
    units = render_systemd(template_context("system"))
    d = _unit_settings(units[DAEMON_SERVICE])
    assert d["User"] == ["tundra"]
    assert d["StateDirectory"] == ["tundra"] and d["LogsDirectory"] == ["tundra"]
    assert d["RuntimeDirectory"] == ["tundra"]
    assert d["WantedBy"] == ["multi-user.target"]
    sock = _unit_settings(units[DAEMON_SOCKET])
    assert sock["ListenStream"] == ["/run/tundra/daemon.sock"]
    assert sock["SocketMode"] == ["0600"] and sock["SocketUser"] == ["tundra"]
    b = _unit_settings(units[BRIDGE_SERVICE])
    assert b["BindsTo"] == [DAEMON_SERVICE]
    assert b["NoNewPrivileges"] == ["yes"] and b["ProtectSystem"] == ["strict"]
    assert b["SystemCallFilter"][0] == "@system-service"
    assert b["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert b["User"] == ["tundra"]


def test_stop_timeout_stays_above_the_daemon_grace() -> None:
    assert stop_timeout_secs(10.0, 2.0) == 20
    assert stop_timeout_secs(30.0, 5.0) == 43
    ctx = msgspec.structs.replace(template_context("user"), stop_timeout_secs=43)
    assert "TimeoutStopSec=43" in render_systemd(ctx)[DAEMON_SERVICE]
    assert render_launchd(
        msgspec.structs.replace(template_context("user", "launchd"), stop_timeout_secs=43)
    )
    plist = plistlib.loads(
        render_launchd(
            msgspec.structs.replace(template_context("user", "launchd"), stop_timeout_secs=43)
        )["org.tundra.daemon.plist"]
    )
    assert plist["ExitTimeOut"] == 43


def test_awkward_paths_are_quoted_and_escaped() -> None:
    ctx = UnitContext(
        scope="system",
        python="/opt/my tools/b$in/python",
        tundra_home="/srv/100%/tundra $HOME",
        socket_path="/run/tundra/daemon.sock",
        path_env="/usr/bin:/bin",
        user_home="/home/x",
        user="x",
    )
    text = render_systemd(ctx)[DAEMON_SERVICE]
    # $ is special in command lines only; % (specifiers) everywhere.
    assert 'ExecStart="/opt/my tools/b$$in/python" -X faulthandler -m tundra daemon' in text
    assert 'Environment="TUNDRA_HOME=/srv/100%%/tundra $HOME"' in text


def _analyze(args: list[str], units: dict[str, str], tmp: Path, env: dict[str, str]) -> str:
    for name, text in units.items():
        (tmp / name).write_text(text)
    proc = subprocess.run(
        ["systemd-analyze", *args, *(f"./{n}" for n in units)],
        cwd=tmp,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


@pytest.mark.parametrize("scope", SCOPES)
def test_rendered_units_pass_systemd_analyze_verify(scope: str, tmp_path: Path) -> None:
    need(
        shutil.which("systemd-analyze") is not None, "systemd-analyze (apt: systemd) not installed"
    )
    # The real interpreter: verify checks that ExecStart's binary exists.
    ctx = msgspec.structs.replace(template_context(scope), python=sys.executable)  # type: ignore[arg-type]
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
    units_dir = tmp_path / "units"
    units_dir.mkdir()
    args = ["--user", "verify"] if scope == "user" else ["verify"]
    stderr = _analyze(args, render_systemd(ctx), units_dir, env)
    # verify exits 0 even for unknown keys or bad values; any line naming our files is a defect.
    ours = [line for line in stderr.splitlines() if "tundra-" in line]
    assert ours == [], "\n".join(ours)


def test_bridge_hardening_scores_ok_with_systemd_analyze_security(tmp_path: Path) -> None:
    need(
        shutil.which("systemd-analyze") is not None, "systemd-analyze (apt: systemd) not installed"
    )
    ctx = msgspec.structs.replace(template_context("system"), python=sys.executable)
    (tmp_path / BRIDGE_SERVICE).write_text(render_systemd(ctx)[BRIDGE_SERVICE])
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", f"./{BRIDGE_SERVICE}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    last = [line for line in proc.stdout.splitlines() if "Overall exposure level" in line]
    need(bool(last), f"systemd-analyze security --offline unsupported: {proc.stderr.strip()}")
    score = float(last[0].split(":")[1].split()[0])
    assert score <= 2.0, last[0]


REQUIRED_PLIST_KEYS = {
    "Label",
    "ProgramArguments",
    "EnvironmentVariables",
    "RunAtLoad",
    "KeepAlive",
    "ThrottleInterval",
    "ExitTimeOut",
    "StandardOutPath",
    "StandardErrorPath",
}


@pytest.mark.parametrize("scope", SCOPES)
def test_plists_parse_and_carry_the_required_keys(scope: str) -> None:
    ctx = template_context(scope, "launchd")  # type: ignore[arg-type]
    plists = {n: plistlib.loads(data) for n, data in render_launchd(ctx).items()}
    assert set(plists) == {"org.tundra.daemon.plist", "org.tundra.bridge.plist"}
    for name, job in plists.items():
        assert REQUIRED_PLIST_KEYS <= set(job), name
        assert job["Label"] + ".plist" == name
        assert job["KeepAlive"] == {"SuccessfulExit": False}
        assert job["RunAtLoad"] is True
        assert job["ProgramArguments"][:5] == [ctx.python, "-X", "faulthandler", "-m", "tundra"]
        env = job["EnvironmentVariables"]
        assert "/usr/bin" in env["PATH"].split(":") and env["TUNDRA_HOME"] == ctx.tundra_home
        logs = "/Users/you/Library/Logs/tundra/" if scope == "user" else "/Library/Logs/tundra/"
        assert job["StandardOutPath"].startswith(logs)
        assert job["StandardErrorPath"].startswith(logs)
        assert job["ExitTimeOut"] >= 20
        if scope == "system":
            assert job["UserName"] == "you"
        else:
            assert "UserName" not in job
    daemon = plists["org.tundra.daemon.plist"]
    assert daemon["ProgramArguments"][-1] == "daemon"
    listener = daemon["Sockets"]["Listeners"]
    assert listener["SockPathName"] == ctx.socket_path
    assert listener["SockPathMode"] == 384  # decimal 0600
    assert "Sockets" not in plists["org.tundra.bridge.plist"]
    # The XML really says 384 (launchd reads decimal, not octal).
    assert b"<integer>384</integer>" in render_launchd(ctx)["org.tundra.daemon.plist"]


def test_launchd_activation_is_empty_off_launchd() -> None:
    from tundra.service.launchd import launchd_socket_fds

    # Not started by launchd (or not macOS): no sockets, no error, so the daemon binds its own.
    assert launchd_socket_fds() == []
