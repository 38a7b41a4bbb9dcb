"""Install, uninstall, start, stop, restart and inspect the OS service (systemd or launchd).

Every action is first computed as a :class:`ServicePlan` (files to write or remove and
commands to run), so ``--dry-run`` prints exactly what a real run would do.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import msgspec

from tundra import __version__
from tundra.errors import UsageError
from tundra.paths import TundraPaths, socket_path
from tundra.service.errors import ServiceCommandFailed, ServiceManagerUnavailable
from tundra.service.platform import Manager, probe_manager
from tundra.service.units import (
    BRIDGE_SERVICE,
    DAEMON_SERVICE,
    DAEMON_SOCKET,
    LAUNCHD_BRIDGE_LABEL,
    LAUNCHD_DAEMON_LABEL,
    Scope,
    UnitContext,
    launchd_log_dir,
    render_launchd,
    render_systemd,
    stop_timeout_secs,
)

__all__ = [
    "Action",
    "PlannedFile",
    "ServicePlan",
    "UnitStatus",
    "build_context",
    "unit_dir",
    "plan",
    "execute",
    "status",
    "manual_alternative",
]

Action = Literal["install", "uninstall", "start", "stop", "restart"]
COMMAND_TIMEOUT_SECS = 60.0
SYSTEM_HOME = "/var/lib/tundra"
SYSTEM_SOCKET = "/run/tundra/daemon.sock"


class PlannedFile(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    content: str
    """Empty when the file is to be removed."""
    remove: bool = False


class ServicePlan(msgspec.Struct, frozen=True, kw_only=True):
    action: str
    manager: str
    scope: str
    files: list[PlannedFile] = msgspec.field(default_factory=list)
    dirs: list[str] = msgspec.field(default_factory=list)
    """Directories to create (0700) before the commands run (launchd does not make them)."""
    commands: list[list[str]] = msgspec.field(default_factory=list)
    notes: list[str] = msgspec.field(default_factory=list)


class UnitStatus(msgspec.Struct, frozen=True, kw_only=True):
    unit: str
    loaded: str
    active: str
    sub: str = ""
    pid: int = 0
    enabled: str = ""
    restarts: int = 0


def _sane_path(python: str, user_home: str, current: str) -> str:
    """PATH for the service: the interpreter's bin dir, ~/.local/bin, then the usual dirs.

    The current PATH's absolute entries are kept (agent CLIs live in odd places: nvm,
    ~/.npm-global, /opt/homebrew), minus relative and temporary entries.
    """
    first = [str(Path(python).parent), f"{user_home}/.local/bin"]
    if sys.platform == "darwin":
        tail = ["/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]
    else:
        tail = ["/usr/local/bin", "/usr/bin", "/bin"]
    middle = [
        p
        for p in current.split(":")
        if p.startswith("/") and not p.startswith(("/tmp/", "/var/tmp/"))
    ]
    out: list[str] = []
    for p in first + middle + tail:
        if p not in out:
            out.append(p)
    return ":".join(out)


def build_context(
    scope: Scope,
    *,
    manager: Manager,
    env: dict[str, str] | None = None,
    run_as: str | None = None,
    home: str | None = None,
    python: str | None = None,
) -> UnitContext:
    """The context for this machine: real interpreter, TUNDRA_HOME, socket, account, timeouts.

    Raises ConfigError when the current config is invalid (the service would exit 2 anyway).
    """
    from tundra.config import load_config

    env = dict(os.environ) if env is None else env
    py = os.path.abspath(python or sys.executable)
    if scope == "user":
        account = pwd.getpwuid(os.getuid())
        paths = TundraPaths.from_env(env)
        if home:
            paths = TundraPaths(Path(home).expanduser().absolute())
            env["TUNDRA_HOME"] = str(paths.home)
        config = load_config(paths.config_file)
        runtime_dir = env.get("XDG_RUNTIME_DIR", "")
        if manager == "systemd" and not runtime_dir:
            runtime_dir = f"/run/user/{account.pw_uid}"
        # Resolve the socket as the CLI will later (RUNTIME_DIRECTORY is only the daemon's).
        cli_env = {k: v for k, v in env.items() if k != "RUNTIME_DIRECTORY"}
        if manager == "systemd" and "XDG_RUNTIME_DIR" not in cli_env:
            cli_env["XDG_RUNTIME_DIR"] = runtime_dir
        resolved = socket_path(config.daemon.socket_path or None, env=cli_env)
        return UnitContext(
            scope="user",
            python=py,
            tundra_home=str(paths.home),
            socket_path=str(resolved),
            path_env=_sane_path(py, account.pw_dir, env.get("PATH", "")),
            user_home=account.pw_dir,
            runtime_dir=runtime_dir,
            stop_timeout_secs=stop_timeout_secs(
                config.daemon.shutdown_timeout_secs, config.daemon.kill_grace_secs
            ),
            version=__version__,
        )
    name = run_as or env.get("SUDO_USER") or pwd.getpwuid(os.getuid()).pw_name
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        raise UsageError(f"no such user: {name}", hint="pass --run-as USER") from None
    if manager == "launchd":
        tundra_home = home or f"{account.pw_dir}/.auto-tundra"
        sock = f"{tundra_home}/run/daemon.sock"
    else:
        tundra_home = home or SYSTEM_HOME
        sock = SYSTEM_SOCKET
    system_paths = TundraPaths(Path(tundra_home))
    # Only root may read /var/lib/tundra; a config that is not there yet means defaults.
    daemon_cfg = load_config(system_paths.config_file).daemon
    timeout = stop_timeout_secs(daemon_cfg.shutdown_timeout_secs, daemon_cfg.kill_grace_secs)
    try:
        group = grp.getgrgid(account.pw_gid).gr_name
    except KeyError:
        group = ""
    return UnitContext(
        scope="system",
        python=py,
        tundra_home=tundra_home,
        socket_path=sock,
        path_env=_sane_path(py, account.pw_dir, ""),
        user_home=account.pw_dir,
        user=account.pw_name,
        group=group,
        stop_timeout_secs=timeout,
        version=__version__,
    )


def unit_dir(manager: Manager, scope: Scope, env: dict[str, str] | None = None) -> Path:
    """Where the units/plists are installed."""
    env = dict(os.environ) if env is None else env
    user_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    if manager == "launchd":
        return (
            user_home / "Library/LaunchAgents"
            if scope == "user"
            else Path("/Library/LaunchDaemons")
        )
    if scope == "system":
        return Path("/etc/systemd/system")
    config_home = env.get("XDG_CONFIG_HOME") or str(user_home / ".config")
    return Path(config_home) / "systemd" / "user"


def _systemctl(scope: Scope, *args: str) -> list[str]:
    return ["systemctl", *(["--user"] if scope == "user" else []), *args]


def _launchd_domain(scope: Scope) -> str:
    return f"gui/{os.getuid()}" if scope == "user" else "system"


def plan(
    action: Action,
    ctx: UnitContext,
    *,
    manager: Manager,
    bridge: bool = True,
    env: dict[str, str] | None = None,
) -> ServicePlan:
    """What ``action`` would write, remove and run (nothing is done here)."""
    scope: Scope = ctx.scope
    where = unit_dir(manager, scope, env)
    files: list[PlannedFile] = []
    dirs: list[str] = []
    commands: list[list[str]] = []
    notes: list[str] = []
    if manager == "systemd":
        rendered = render_systemd(ctx)
        names = [DAEMON_SOCKET, DAEMON_SERVICE] + ([BRIDGE_SERVICE] if bridge else [])
        if action == "install":
            files = [PlannedFile(path=str(where / n), content=rendered[n]) for n in names]
            commands = [
                _systemctl(scope, "daemon-reload"),
                _systemctl(scope, "enable", "--now", *names),
            ]
            if scope == "user":
                notes.append(
                    "to keep the daemon running after you log out: "
                    f"loginctl enable-linger {pwd.getpwuid(os.getuid()).pw_name}"
                )
            else:
                notes.append(
                    f"commands run as {ctx.user} find the daemon with "
                    f"TUNDRA_HOME={ctx.tundra_home} TUNDRA_SOCKET={ctx.socket_path}"
                )
        elif action == "uninstall":
            # Also remove a bridge unit installed earlier even when --no-bridge is given now.
            names = [DAEMON_SOCKET, DAEMON_SERVICE, BRIDGE_SERVICE]
            commands = [_systemctl(scope, "disable", "--now", *names)]
            files = [PlannedFile(path=str(where / n), content="", remove=True) for n in names]
            commands.append(_systemctl(scope, "daemon-reload"))
        elif action == "start":
            commands = [_systemctl(scope, "start", *names)]
        elif action == "stop":
            # Stop the socket too, or the next connection starts the daemon again.
            commands = [_systemctl(scope, "stop", *reversed(names))]
        elif action == "restart":
            commands = [_systemctl(scope, "restart", DAEMON_SERVICE)]
            if bridge:
                commands.append(_systemctl(scope, "restart", BRIDGE_SERVICE))
    elif manager == "launchd":
        rendered_plists = render_launchd(ctx)
        labels = [LAUNCHD_DAEMON_LABEL] + ([LAUNCHD_BRIDGE_LABEL] if bridge else [])
        domain = _launchd_domain(scope)
        plist_paths = {label: str(where / f"{label}.plist") for label in labels}
        if action == "install":
            files = [
                PlannedFile(
                    path=plist_paths[label], content=rendered_plists[f"{label}.plist"].decode()
                )
                for label in labels
            ]
            dirs = [launchd_log_dir(ctx), str(Path(ctx.socket_path).parent), ctx.tundra_home]
            commands = [["launchctl", "bootstrap", domain, plist_paths[label]] for label in labels]
        elif action == "uninstall":
            labels = [LAUNCHD_DAEMON_LABEL, LAUNCHD_BRIDGE_LABEL]
            commands = [["launchctl", "bootout", f"{domain}/{label}"] for label in reversed(labels)]
            files = [
                PlannedFile(path=str(where / f"{label}.plist"), content="", remove=True)
                for label in labels
            ]
        elif action == "start":
            commands = [["launchctl", "bootstrap", domain, plist_paths[label]] for label in labels]
        elif action == "stop":
            # launchd restarts a job that is merely killed (socket, KeepAlive): unload it.
            commands = [["launchctl", "bootout", f"{domain}/{label}"] for label in reversed(labels)]
        elif action == "restart":
            commands = [["launchctl", "kickstart", "-k", f"{domain}/{label}"] for label in labels]
    return ServicePlan(
        action=action,
        manager=manager,
        scope=scope,
        files=files,
        dirs=dirs,
        commands=commands,
        notes=notes,
    )


def manual_alternative(ctx: UnitContext | None = None) -> str:
    """What to do where no service manager runs (the refusal's hint)."""
    py = ctx.python if ctx else sys.executable
    return (
        "run it in the foreground instead: `tundra daemon` (and `tundra bridge` in another "
        f"shell), or under your own supervisor with `{py} -X faulthandler -m tundra daemon` "
        "(restart on exit status 1, not 2); `tundra service install --dry-run` prints the "
        "units to copy onto a host with systemd"
    )


def _run(cmd: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECS, check=False
        )
    except FileNotFoundError:
        raise ServiceCommandFailed(f"command not found: {cmd[0]}") from None
    except subprocess.TimeoutExpired:
        raise ServiceCommandFailed(
            f"`{' '.join(cmd)}` did not finish within {COMMAND_TIMEOUT_SECS:.0f}s"
        ) from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ServiceCommandFailed(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode})"
            + (f": {detail[-1]}" if detail else ""),
            details={"stderr": proc.stderr[-4000:], "exit_code": proc.returncode},
        )
    return proc


def require_manager(manager: Manager, scope: Scope, ctx: UnitContext | None = None) -> None:
    """Raise ServiceManagerUnavailable unless ``manager`` can be driven here."""
    probe = probe_manager(scope)
    if manager == "none" or probe.manager != manager:
        reason = probe.reason if probe.manager == "none" else f"{manager} is not available here"
        raise ServiceManagerUnavailable(
            f"cannot manage the tundra service: {reason}", hint=manual_alternative(ctx)
        )


def execute(p: ServicePlan) -> list[str]:
    """Carry out a plan; returns a human log of what was done."""
    done: list[str] = []
    for d in p.dirs:
        Path(d).mkdir(mode=0o700, parents=True, exist_ok=True)
    for f in p.files:
        path = Path(f.path)
        if f.remove:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(f.content)
        tmp.chmod(0o644)
        os.replace(tmp, path)
        done.append(f"wrote {path}")
    tolerant = p.action in ("uninstall", "stop")
    for cmd in p.commands:
        # Unloading something that is not loaded is fine when the goal is "not running".
        proc = _run(cmd, check=not tolerant)
        done.append(
            f"ran {' '.join(cmd)}" + (f" (exit {proc.returncode})" if proc.returncode else "")
        )
    for f in p.files:
        if f.remove and Path(f.path).exists():
            Path(f.path).unlink()
            done.append(f"removed {f.path}")
    if p.action == "uninstall" and p.manager == "systemd":
        _run(_systemctl("user" if p.scope == "user" else "system", "daemon-reload"), check=False)
    return done


def _systemd_status(scope: Scope, units: Sequence[str]) -> list[UnitStatus]:
    props = "Id,LoadState,ActiveState,SubState,MainPID,UnitFileState,NRestarts"
    proc = _run(_systemctl(scope, "show", f"--property={props}", *units), check=False)
    out: list[UnitStatus] = []
    for block in proc.stdout.strip().split("\n\n"):
        kv = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if not kv:
            continue
        out.append(
            UnitStatus(
                unit=kv.get("Id", "?"),
                loaded=kv.get("LoadState", ""),
                active=kv.get("ActiveState", ""),
                sub=kv.get("SubState", ""),
                pid=int(kv.get("MainPID", "0") or 0),
                enabled=kv.get("UnitFileState", ""),
                restarts=int(kv.get("NRestarts", "0") or 0),
            )
        )
    return out


def _launchd_status(scope: Scope, labels: Sequence[str]) -> list[UnitStatus]:
    out: list[UnitStatus] = []
    for label in labels:
        proc = _run(["launchctl", "print", f"{_launchd_domain(scope)}/{label}"], check=False)
        if proc.returncode != 0:
            out.append(UnitStatus(unit=label, loaded="not-loaded", active="inactive"))
            continue
        kv: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            key, sep, value = line.strip().partition(" = ")
            if sep and key not in kv:
                kv[key] = value
        pid = kv.get("pid", "0")
        out.append(
            UnitStatus(
                unit=label,
                loaded="loaded",
                active="active" if kv.get("state") == "running" else kv.get("state", "inactive"),
                pid=int(pid) if pid.isdigit() else 0,
                restarts=int(kv.get("runs", "1")) - 1 if kv.get("runs", "").isdigit() else 0,
            )
        )
    return out


def status(manager: Manager, scope: Scope) -> list[UnitStatus]:
    """State of the installed units/jobs as the service manager sees them."""
    if manager == "systemd":
        return _systemd_status(scope, [DAEMON_SOCKET, DAEMON_SERVICE, BRIDGE_SERVICE])
    if manager == "launchd":
        return _launchd_status(scope, [LAUNCHD_DAEMON_LABEL, LAUNCHD_BRIDGE_LABEL])
    return []
