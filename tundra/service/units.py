"""Render the systemd units and launchd plists for the daemon and the bridge.

One :class:`UnitContext` (interpreter, ``TUNDRA_HOME``, socket, scope...) renders every file;
the copies in the repository's ``systemd/`` and ``launchd/`` directories are this module's
output for :func:`template_context` and a test keeps them equal.

Two hardening profiles, on purpose:

* the **daemon** hosts PTY sessions: whatever it is confined by, the user's shells and agent
  CLIs are confined by too. It gets only ``UMask=0077`` -- nothing that implies
  ``NoNewPrivileges`` (``SystemCallFilter``, ``RestrictAddressFamilies``, ``PrivateDevices``,
  ``ProtectKernel*``...), which would break ``sudo`` inside a session;
* the **bridge** owns no child process and only speaks HTTP and IPC, so it gets the full set.
"""

from __future__ import annotations

import math
import plistlib
from collections.abc import Iterable
from typing import Literal

import msgspec

__all__ = [
    "Scope",
    "UnitContext",
    "DAEMON_SERVICE",
    "DAEMON_SOCKET",
    "BRIDGE_SERVICE",
    "LAUNCHD_DAEMON_LABEL",
    "LAUNCHD_BRIDGE_LABEL",
    "LAUNCHD_SOCKET_NAME",
    "render_systemd",
    "render_launchd",
    "stop_timeout_secs",
    "template_context",
]

Scope = Literal["user", "system"]

DAEMON_SERVICE = "tundra-daemon.service"
DAEMON_SOCKET = "tundra-daemon.socket"
BRIDGE_SERVICE = "tundra-bridge.service"
LAUNCHD_DAEMON_LABEL = "org.tundra.daemon"
LAUNCHD_BRIDGE_LABEL = "org.tundra.bridge"
LAUNCHD_SOCKET_NAME = "Listeners"
"""The key under ``Sockets`` the daemon passes to ``launch_activate_socket``."""

WATCHDOG_SECS = 30
RESTART_SECS = 2
START_LIMIT_INTERVAL_SECS = 120
START_LIMIT_BURST = 5
LAUNCHD_THROTTLE_SECS = 10
CONFIG_ERROR_EXIT = 2
"""The daemon's exit status for a config/usage error: restarting cannot fix it."""


class UnitContext(msgspec.Struct, frozen=True, kw_only=True):
    """Everything that varies between installations. Paths are plain absolute paths."""

    scope: Scope
    python: str
    """Absolute interpreter path (a venv's ``bin/python``, not resolved: the venv must apply)."""
    tundra_home: str
    socket_path: str
    path_env: str
    """PATH for the daemon: agent CLIs (claude, codex, git) must be found like in a shell."""
    user_home: str
    """Home of the user the service runs as; user units write paths below it as ``%h``."""
    runtime_dir: str = ""
    """``$XDG_RUNTIME_DIR`` of that user; user units write paths below it as ``%t``."""
    user: str = ""
    """System scope: the account the services run as (``User=``/``UserName``)."""
    group: str = ""
    stop_timeout_secs: int = 20
    version: str = ""


def stop_timeout_secs(shutdown_timeout_secs: float, kill_grace_secs: float) -> int:
    """TimeoutStopSec/ExitTimeOut: above the daemon's own shutdown grace, so the daemon --
    not the service manager -- hangs up its terminals; SIGKILL is the last resort."""
    return max(20, math.ceil(shutdown_timeout_secs + kill_grace_secs) + 8)


def template_context(
    scope: Scope, manager: Literal["systemd", "launchd"] = "systemd"
) -> UnitContext:
    """The context the repository's example files are rendered with."""
    if manager == "launchd":
        return UnitContext(
            scope=scope,
            python="/opt/homebrew/bin/python3",
            tundra_home="/Users/you/.auto-tundra",
            socket_path="/Users/you/.auto-tundra/run/daemon.sock",
            path_env="/Users/you/.local/bin:/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            user_home="/Users/you",
            user="you" if scope == "system" else "",
            group="staff" if scope == "system" else "",
        )
    if scope == "user":
        return UnitContext(
            scope="user",
            python="/usr/bin/python3",
            tundra_home="/home/you/.auto-tundra",
            socket_path="/run/user/1000/auto-tundra/daemon.sock",
            path_env="/home/you/.local/bin:/usr/local/bin:/usr/bin:/bin",
            user_home="/home/you",
            runtime_dir="/run/user/1000",
        )
    return UnitContext(
        scope="system",
        python="/usr/bin/python3",
        tundra_home="/var/lib/tundra",
        socket_path="/run/tundra/daemon.sock",
        path_env="/usr/local/bin:/usr/bin:/bin",
        user_home="/home/tundra",
        user="tundra",
        group="tundra",
    )


# --- systemd -----------------------------------------------------------------------------


def _sd_escape(text: str, *, in_exec: bool = False) -> str:
    """Escape a literal for a unit file value: specifiers, quotes, backslashes -- and ``$``
    in command lines only (Environment= performs no variable expansion)."""
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return text.replace("$", "$$") if in_exec else text


def _sd_path(ctx: UnitContext, path: str, *, in_exec: bool = False) -> str:
    """A path as a unit file value; in user units ``%h``/``%t`` keep the unit portable."""
    if ctx.scope == "user":
        for prefix, spec in ((ctx.runtime_dir, "%t"), (ctx.user_home, "%h")):
            if prefix and (path == prefix or path.startswith(prefix.rstrip("/") + "/")):
                return spec + _sd_escape(path[len(prefix.rstrip("/")) :], in_exec=in_exec)
    return _sd_escape(path, in_exec=in_exec)


def _sd_search_path(ctx: UnitContext, value: str) -> str:
    return ":".join(_sd_path(ctx, p) for p in value.split(":") if p)


def _sd_word(value: str) -> str:
    """One already-escaped word of a command line or assignment, quoted when needed."""
    if not value or any(c.isspace() for c in value):
        return f'"{value}"'
    return value


def _sd_env(name: str, value: str) -> str:
    return "Environment=" + _sd_word(f"{name}={value}")


def _exec(ctx: UnitContext, *args: str) -> str:
    words = [
        _sd_word(_sd_path(ctx, ctx.python, in_exec=True)),
        "-X",
        "faulthandler",
        "-m",
        "tundra",
        *args,
    ]
    return " ".join(words)


def _lines(*groups: Iterable[str]) -> str:
    out: list[str] = []
    for g in groups:
        out.extend(g)
    return "\n".join(out) + "\n"


def _header(ctx: UnitContext, name: str) -> list[str]:
    how = "tundra service install --" + ctx.scope
    made = f" (tundra {ctx.version})" if ctx.version else ""
    return [
        f"# {name} -- {ctx.scope} unit, rendered by `{how}`{made}.",
        "# Edit with `systemctl " + ("--user " if ctx.scope == "user" else "") + "edit` "
        "(drop-ins survive reinstalls); see docs/operations.md.",
    ]


def _common_env(ctx: UnitContext) -> list[str]:
    return [
        _sd_env("PYTHONUNBUFFERED", "1"),
        _sd_env("TUNDRA_HOME", _sd_path(ctx, ctx.tundra_home)),
        # The daemon, `tundra` commands and the bridge must agree on one socket path even
        # though only the daemon sees RUNTIME_DIRECTORY.
        _sd_env("TUNDRA_SOCKET", _sd_path(ctx, ctx.socket_path)),
        _sd_env("PATH", _sd_search_path(ctx, ctx.path_env)),
    ]


def _network(ctx: UnitContext, after: str) -> list[str]:
    """Order after ``after``; system units also wait for the network (user managers have no
    network-online.target)."""
    if ctx.scope == "system":
        return [f"After={after} network-online.target", "Wants=network-online.target"]
    return [f"After={after}"]


def _account(ctx: UnitContext) -> list[str]:
    if ctx.scope != "system":
        return []
    lines = [f"User={ctx.user}"]
    if ctx.group:
        lines.append(f"Group={ctx.group}")
    return lines


def _daemon_service(ctx: UnitContext) -> str:
    system = ctx.scope == "system"
    runtime_name = "tundra" if system else "auto-tundra"
    dirs = [
        # The socket unit creates its socket in this directory: keep it across restarts.
        f"RuntimeDirectory={runtime_name}",
        "RuntimeDirectoryMode=0700",
        "RuntimeDirectoryPreserve=yes",
    ]
    if system:
        dirs += [
            "StateDirectory=tundra",
            "StateDirectoryMode=0700",
            "LogsDirectory=tundra",
            "LogsDirectoryMode=0700",
            # Sessions open many PTYs (3 fds each); see `tundra doctor` for the safe max_ptys.
            "LimitNOFILE=65536",
        ]
    else:
        dirs += [
            "# State and logs live in TUNDRA_HOME (the CLI reads the same files); logs go",
            "# to the journal while running under systemd.",
        ]
    return _lines(
        _header(ctx, DAEMON_SERVICE),
        [
            "",
            "[Unit]",
            "Description=Tundra daemon (AI coding agents and terminals)",
            f"Requires={DAEMON_SOCKET}",
        ],
        _network(ctx, DAEMON_SOCKET),
        [
            f"StartLimitIntervalSec={START_LIMIT_INTERVAL_SECS}",
            f"StartLimitBurst={START_LIMIT_BURST}",
            "",
            "[Service]",
            "Type=notify",
            "NotifyAccess=main",
        ],
        _account(ctx),
        [
            f"ExecStart={_exec(ctx, 'daemon')}",
            "ExecReload=/bin/kill -HUP $MAINPID",
        ],
        _common_env(ctx),
        [
            f"WatchdogSec={WATCHDOG_SECS}",
            "Restart=on-failure",
            f"RestartSec={RESTART_SECS}",
            "# Exit status 2 is a configuration error: restarting cannot fix it.",
            f"RestartPreventExitStatus={CONFIG_ERROR_EXIT}",
            "# SIGTERM to the daemon only; it hangs up its terminals' process groups itself",
            "# (shells ignore SIGTERM). Whatever is left gets SIGKILL after TimeoutStopSec.",
            "KillMode=mixed",
            "TimeoutStartSec=60",
            f"TimeoutStopSec={ctx.stop_timeout_secs}",
        ],
        dirs,
        [
            "UMask=0077",
            "# PTY children inherit every sandboxing option of this unit: no hardening that",
            "# implies NoNewPrivileges (sudo inside a session must keep working).",
            "StandardOutput=journal",
            "StandardError=journal",
            "SyslogIdentifier=tundra-daemon",
            "",
            "[Install]",
            "WantedBy=" + ("multi-user.target" if system else "default.target"),
            f"Also={DAEMON_SOCKET}",
        ],
    )


def _daemon_socket(ctx: UnitContext) -> str:
    lines = [
        "",
        "[Unit]",
        "Description=Tundra daemon IPC socket",
        "",
        "[Socket]",
        f"ListenStream={_sd_path(ctx, ctx.socket_path)}",
        "# The default is 0666: the IPC socket gives full control of the user's sessions.",
        "SocketMode=0600",
        "DirectoryMode=0700",
        "RemoveOnStop=yes",
        f"Service={DAEMON_SERVICE}",
    ]
    if ctx.scope == "system":
        lines.append(f"SocketUser={ctx.user}")
        if ctx.group:
            lines.append(f"SocketGroup={ctx.group}")
    lines += ["", "[Install]", "WantedBy=sockets.target"]
    return _lines(_header(ctx, DAEMON_SOCKET), lines)


def _bridge_service(ctx: UnitContext) -> str:
    system = ctx.scope == "system"
    socket_dir = ctx.socket_path.rsplit("/", 1)[0]
    return _lines(
        _header(ctx, BRIDGE_SERVICE),
        [
            "",
            "[Unit]",
            "Description=Tundra bridge (HTTP + WebSocket front of the daemon)",
            f"BindsTo={DAEMON_SERVICE}",
        ],
        _network(ctx, DAEMON_SERVICE),
        [
            f"StartLimitIntervalSec={START_LIMIT_INTERVAL_SECS}",
            f"StartLimitBurst={START_LIMIT_BURST}",
            "",
            "[Service]",
            "Type=exec",
        ],
        _account(ctx),
        [f"ExecStart={_exec(ctx, 'bridge')}"],
        _common_env(ctx),
        [
            "Restart=on-failure",
            f"RestartSec={RESTART_SECS}",
            f"RestartPreventExitStatus={CONFIG_ERROR_EXIT}",
            "TimeoutStopSec=15",
            "UMask=0077",
            "StandardOutput=journal",
            "StandardError=journal",
            "SyslogIdentifier=tundra-bridge",
            "# The bridge owns no child process and only speaks HTTP and IPC: full hardening.",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=read-only",
            # The bridge writes bridge.token and logs/bridge.log.
            "ReadWritePaths=" + _sd_word(_sd_path(ctx, ctx.tundra_home)),
            "ReadWritePaths=" + _sd_word("-" + _sd_path(ctx, socket_dir)),
            "PrivateTmp=yes",
            "PrivateDevices=yes",
            "PrivateMounts=yes",
            "RemoveIPC=yes",
            "ProtectProc=invisible",
            "ProcSubset=pid",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "ProtectControlGroups=yes",
            "ProtectClock=yes",
            "ProtectHostname=yes",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
            "RestrictNamespaces=yes",
            "RestrictRealtime=yes",
            "RestrictSUIDSGID=yes",
            "LockPersonality=yes",
            "MemoryDenyWriteExecute=yes",
            "SystemCallArchitectures=native",
            "SystemCallFilter=@system-service",
            "SystemCallFilter=~@privileged @resources",
            "SystemCallErrorNumber=EPERM",
        ],
        ["CapabilityBoundingSet=", "AmbientCapabilities="] if system else [],
        [
            "",
            "[Install]",
            "WantedBy=" + ("multi-user.target" if system else "default.target"),
        ],
    )


def render_systemd(ctx: UnitContext) -> dict[str, str]:
    """File name -> content of the three units for ``ctx.scope``."""
    return {
        DAEMON_SERVICE: _daemon_service(ctx),
        DAEMON_SOCKET: _daemon_socket(ctx),
        BRIDGE_SERVICE: _bridge_service(ctx),
    }


# --- launchd -----------------------------------------------------------------------------


def launchd_log_dir(ctx: UnitContext) -> str:
    """``~/Library/Logs/tundra`` (agents) or ``/Library/Logs/tundra`` (system daemons)."""
    base = ctx.user_home if ctx.scope == "user" else ""
    return f"{base}/Library/Logs/tundra"


def _plist(ctx: UnitContext, label: str, command: str, extra: dict[str, object]) -> bytes:
    logs = launchd_log_dir(ctx)
    job: dict[str, object] = {
        "Label": label,
        "ProgramArguments": [ctx.python, "-X", "faulthandler", "-m", "tundra", command],
        "EnvironmentVariables": {
            "PATH": ctx.path_env,
            "PYTHONUNBUFFERED": "1",
            "TUNDRA_HOME": ctx.tundra_home,
            "TUNDRA_SOCKET": ctx.socket_path,
        },
        "WorkingDirectory": ctx.tundra_home,
        "RunAtLoad": True,
        # Restart after a crash, not after a clean exit (`tundra daemon` exits 0 on SIGTERM).
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": LAUNCHD_THROTTLE_SECS,
        "ExitTimeOut": ctx.stop_timeout_secs,
        "ProcessType": "Standard",
        "Umask": 0o077,
        "StandardOutPath": f"{logs}/{command}.out.log",
        "StandardErrorPath": f"{logs}/{command}.err.log",
    }
    if ctx.scope == "system":
        job["UserName"] = ctx.user
        if ctx.group:
            job["GroupName"] = ctx.group
    job.update(extra)
    return plistlib.dumps(job, fmt=plistlib.FMT_XML, sort_keys=True)


def render_launchd(ctx: UnitContext) -> dict[str, bytes]:
    """File name -> plist bytes for the daemon and the bridge jobs."""
    daemon = _plist(
        ctx,
        LAUNCHD_DAEMON_LABEL,
        "daemon",
        {
            # launchd creates the socket; the daemon gets it from launch_activate_socket.
            # SockPathMode is decimal in a plist: 384 == 0o600.
            "Sockets": {
                LAUNCHD_SOCKET_NAME: {
                    "SockPathName": ctx.socket_path,
                    "SockPathMode": 0o600,
                    "SockType": "stream",
                    "SockFamily": "Unix",
                }
            },
        },
    )
    bridge = _plist(ctx, LAUNCHD_BRIDGE_LABEL, "bridge", {})
    return {f"{LAUNCHD_DAEMON_LABEL}.plist": daemon, f"{LAUNCHD_BRIDGE_LABEL}.plist": bridge}
