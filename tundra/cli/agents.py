"""`tundra agents ls`: the agent presets and whether each CLI is installed."""

from __future__ import annotations

import argparse
from typing import Any

from tundra.cli.output import emit

__all__ = ["register"]


def register(sub: Any) -> None:
    a = sub.add_parser("agents", help="agent presets (claude, codex, gemini, opencode, shell, ...)")
    asub = a.add_subparsers(dest="agents_cmd", metavar="COMMAND", required=True)
    p = asub.add_parser("ls", help="list presets; missing binaries are marked")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--local", action="store_true", help="read the presets here instead of asking the daemon"
    )
    p.set_defaults(func=cmd_ls)


def _human(r: dict[str, Any]) -> str:
    rows = [f"{'NAME':<10} {'STATUS':<10} {'SOURCE':<8} COMMAND"]
    for p in r["presets"]:
        status = "ok" if p["available"] else "missing"
        source = "builtin" if p["source"] == "builtin" else "config"
        rows.append(f"{p['name']:<10} {status:<10} {source:<8} {' '.join(p['command'])}")
    missing = [p["binary"] for p in r["presets"] if not p["available"]]
    if missing:
        rows.append(f"not installed: {', '.join(sorted(set(missing)))}")
    return "\n".join(rows)


def cmd_ls(args: argparse.Namespace) -> int:
    if args.local:
        import msgspec

        from tundra.agents.registry import load_registry, preset_infos
        from tundra.paths import TundraPaths

        reg = load_registry(TundraPaths.from_env().agents_file)
        data = {"presets": [msgspec.to_builtins(i) for i in preset_infos(reg)]}
    else:
        from tundra.ipc.client import BlockingClient

        with BlockingClient() as c:
            data = c.call("agents.list")
    return emit(args, data, _human)
