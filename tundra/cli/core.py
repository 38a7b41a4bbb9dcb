"""Core commands: `tundra daemon`, `status`, `ping`, `version`, `daemon stop|reload`."""

from __future__ import annotations

import argparse
import time
from typing import Any

from tundra import __version__
from tundra.cli.output import emit
from tundra.ipc.client import BlockingClient

__all__ = ["register"]


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def register(sub: Any) -> None:
    d = sub.add_parser("daemon", help="run the daemon in the foreground (or stop/reload it)")
    d.add_argument("action", nargs="?", choices=["run", "stop", "reload"], default="run",
                   help="run (default), stop or reload a running daemon")
    d.add_argument("--environment", choices=["development", "staging", "production"],
                   help="logging defaults for this environment (overrides [general] environment)")
    d.add_argument("--log-format", choices=["auto", "human", "json"], help="log output format")
    d.add_argument("--validate-config", action="store_true",
                   help="check the configuration and exit (0 valid, 2 invalid)")
    _add_json(d)
    d.set_defaults(func=cmd_daemon)

    s = sub.add_parser("status", help="daemon pid, version, uptime, socket, store and services")
    _add_json(s)
    s.set_defaults(func=cmd_status)

    p = sub.add_parser("ping", help="check that the daemon answers")
    _add_json(p)
    p.set_defaults(func=cmd_ping)

    v = sub.add_parser("version", help="print the version")
    _add_json(v)
    v.set_defaults(func=cmd_version)


def cmd_daemon(args: argparse.Namespace) -> int:
    if args.validate_config:
        from tundra.cli.config_cmd import validate_all

        return validate_all(as_json=args.json)
    if args.action == "stop":
        return _stop_daemon()
    if args.action == "reload":
        with BlockingClient() as c:
            result: dict[str, Any] = c.call("daemon.reload")
        return emit(args, result, lambda r: "reloaded: " + (", ".join(r.get("changed", [])) or "no changes")
                    if r.get("reloaded") else f"reload failed: {r.get('error')}")
    from tundra.daemon.run import DaemonOptions, run_daemon

    return run_daemon(DaemonOptions(environment=args.environment, log_format=args.log_format))


def _stop_daemon() -> int:
    """Ask for a graceful stop, then wait until the daemon process is gone."""
    import os

    from tundra.ipc.errors import ConnectionLost

    with BlockingClient() as c:
        pid = int(c.call("ping")["pid"])
        try:
            c.call("daemon.stop")
        except ConnectionLost:
            pass  # the daemon may close the connection before the reply: that is stopping too
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print(f"daemon stopped (pid {pid})")
            return 0
        except PermissionError:
            break
        time.sleep(0.05)
    print(f"daemon (pid {pid}) is still stopping; see `tundra logs`")
    return 1


def _fmt_uptime(secs: float) -> str:
    s = int(secs)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def _human_status(st: dict[str, Any]) -> str:
    lines = [
        f"daemon      running (pid {st['pid']}, version {st['version']})",
        f"uptime      {_fmt_uptime(st['uptime_secs'])}",
        f"environment {st['environment']}",
        f"socket      {st['socket']}",
        f"home        {st['home']}",
    ]
    store = st.get("store") or {}
    store_line = f"{store.get('engine') or '-'} {store.get('state', '?')}"
    if store.get("last_error"):
        store_line += f" (last error: {store['last_error']})"
    lines.append(f"store       {store_line}")
    for name, info in (st.get("services") or {}).items():
        summary = ", ".join(f"{k}={v}" for k, v in info.items() if v is not None and not isinstance(v, (dict, list)))
        lines.append(f"  {name:<10}{summary}")
    ipc = st.get("ipc") or {}
    if ipc:
        lines.append(f"ipc         {ipc.get('connections', 0)} connections, {ipc.get('requests_served', 0)} requests served")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    with BlockingClient(timeout=10) as c:
        st: dict[str, Any] = c.call("status")
    return emit(args, st, _human_status)


def cmd_ping(args: argparse.Namespace) -> int:
    with BlockingClient(timeout=5) as c:
        t0 = time.perf_counter()
        res: dict[str, Any] = c.call("ping")
        ms = (time.perf_counter() - t0) * 1000
    res["rtt_ms"] = round(ms, 3)
    return emit(args, res, lambda r: f"pong from pid {r['pid']} (version {r['version']}) in {r['rtt_ms']:.2f} ms")


def cmd_version(args: argparse.Namespace) -> int:
    return emit(args, {"version": __version__}, lambda r: f"tundra {r['version']}")
