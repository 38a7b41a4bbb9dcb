"""`tundra service install|uninstall|start|stop|restart|status [--user|--system] [--dry-run]`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from tundra.cli.output import emit
from tundra.errors import TundraError, UsageError
from tundra.ipc.client import BlockingClient
from tundra.service.errors import ServiceError
from tundra.service.manager import (
    Action,
    ServicePlan,
    build_context,
    execute,
    plan,
    require_manager,
    status,
)
from tundra.service.platform import Manager, probe_manager
from tundra.service.units import DAEMON_SERVICE, LAUNCHD_DAEMON_LABEL, Scope, UnitContext

__all__ = ["register"]

ACTIONS: tuple[Action, ...] = ("install", "uninstall", "start", "stop", "restart")


def register(sub: Any) -> None:
    p = sub.add_parser("service", help="run tundra under systemd (Linux) or launchd (macOS)")
    actions = p.add_subparsers(dest="service_action", metavar="ACTION", required=True)
    helps = {
        "install": "render the units with this interpreter and TUNDRA_HOME, install, enable and start",
        "uninstall": "stop, disable and remove the units",
        "start": "start the socket, daemon and bridge",
        "stop": "stop the bridge, daemon and socket",
        "restart": "restart the daemon (and the bridge)",
        "status": "show what the service manager reports",
    }
    for name in (*ACTIONS, "status"):
        a = actions.add_parser(name, help=helps[name])
        scope = a.add_mutually_exclusive_group()
        scope.add_argument(
            "--user",
            dest="scope",
            action="store_const",
            const="user",
            help="per-user units (default; sessions run as you)",
        )
        scope.add_argument(
            "--system",
            dest="scope",
            action="store_const",
            const="system",
            help="system units running as --run-as (needs root)",
        )
        a.add_argument(
            "--manager",
            choices=["auto", "systemd", "launchd"],
            default="auto",
            help="service manager (default: the one running here)",
        )
        a.add_argument("--json", action="store_true", help="print JSON")
        if name != "status":
            a.add_argument(
                "--dry-run", action="store_true", help="print what would be written and run"
            )
            a.add_argument(
                "--no-bridge", dest="bridge", action="store_false", help="leave the bridge out"
            )
        if name == "install":
            a.add_argument(
                "--run-as", metavar="USER", help="--system: account to run as (default: $SUDO_USER)"
            )
            a.add_argument("--home", metavar="DIR", help="TUNDRA_HOME for the service")
            a.add_argument("--python", metavar="PATH", help="interpreter (default: this one)")
        a.set_defaults(func=cmd_service, scope="user")


def _manager(args: argparse.Namespace, scope: Scope) -> Manager:
    if args.manager != "auto":
        chosen: Manager = args.manager
        return chosen
    found = probe_manager(scope).manager
    if found == "none" and getattr(args, "dry_run", False):
        # Nothing to talk to, but the user may want the files for another host.
        return "launchd" if sys.platform == "darwin" else "systemd"
    return found


def _human_plan(p: ServicePlan, dry_run: bool) -> str:
    lines: list[str] = []
    verb = "would" if dry_run else "will"
    for f in p.files:
        if f.remove:
            lines.append(f"# {verb} remove {f.path}")
        else:
            lines.append(f"# {verb} write {f.path} (0644)")
            lines.append(f.content.rstrip("\n"))
            lines.append("")
    for d in p.dirs:
        lines.append(f"# {verb} create {d}/ (0700)")
    for cmd in p.commands:
        lines.append(f"# {verb} run: {' '.join(cmd)}")
    for note in p.notes:
        lines.append(f"# note: {note}")
    return "\n".join(lines)


def cmd_service(args: argparse.Namespace) -> int:
    scope: Scope = args.scope
    action: str = args.service_action
    manager = _manager(args, scope)
    if action == "status":
        require_manager(manager, scope)
        units = status(manager, scope)
        data = {"manager": manager, "scope": scope, "units": units}
        emit(args, data, _human_status)
        daemon_units = (DAEMON_SERVICE, LAUNCHD_DAEMON_LABEL)
        return 0 if any(u.unit in daemon_units and u.active == "active" for u in units) else 1
    ctx = None
    try:
        ctx = build_context(
            scope,
            manager=manager if manager != "none" else "systemd",
            run_as=getattr(args, "run_as", None),
            home=getattr(args, "home", None),
            python=getattr(args, "python", None),
        )
    except TundraError:
        if action == "install":
            raise
    if ctx is None:
        # Stopping or removing only needs unit names, not a valid config.
        ctx = UnitContext(
            scope=scope,
            python=sys.executable,
            tundra_home="",
            socket_path="",
            path_env="",
            user_home=str(Path.home()),
        )
    if not args.dry_run:
        require_manager(manager, scope, ctx)
        if scope == "system" and os.geteuid() != 0:
            raise UsageError(
                "--system units are managed by root",
                hint=f"sudo {sys.executable} -m tundra service {action} --system",
            )
    p = plan(action, ctx, manager=manager, bridge=args.bridge)  # type: ignore[arg-type]
    running = _foreground_daemon(ctx) if action == "install" else None
    if running:
        msg = f"daemon already running (pid {running.get('pid')}, socket {ctx.socket_path})"
        hint = (
            "stop it first (`tundra daemon stop`): the service's daemon would exit 2 and stay down"
        )
        if not args.dry_run:
            raise ServiceError(msg, hint=hint)
        p = msgspec.structs.replace(p, notes=[*p.notes, f"{msg}; {hint}"])
    if args.dry_run:
        return emit(
            args,
            msgspec.structs.replace(p, notes=[*p.notes, "dry run: nothing done"]),
            lambda x: _human_plan(x, True),
        )
    done = execute(p)
    result: dict[str, Any] = {"plan": p, "done": done}
    if action in ("install", "start", "restart"):
        result["units"] = status(manager, scope)
    return emit(args, result, _human_done)


def _foreground_daemon(ctx: UnitContext) -> dict[str, Any] | None:
    """The ping answer of a daemon already serving the socket the units would use."""
    if not ctx.socket_path:
        return None
    try:
        with BlockingClient(ctx.socket_path, timeout=2.0) as client:
            answer: dict[str, Any] = client.call("ping", result_type=dict[str, Any])
            return answer
    except TundraError:
        return None


def _human_done(result: dict[str, Any]) -> str:
    lines = list(result["done"])
    lines += [f"note: {n}" for n in result["plan"].notes]
    if "units" in result:
        lines.append(_human_status({"units": result["units"]}))
    return "\n".join(lines)


def _human_status(data: dict[str, Any]) -> str:
    lines = []
    for u in data["units"]:
        pid = f" pid {u.pid}" if u.pid else ""
        extra = f" ({u.enabled})" if u.enabled else ""
        restarts = f", {u.restarts} restarts" if u.restarts else ""
        lines.append(f"{u.unit:<24}{u.active}/{u.sub or '-'}{pid}{extra}{restarts}")
    return "\n".join(lines)
