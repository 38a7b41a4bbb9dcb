"""`tundra term ...`: create, list, inspect, drive and kill daemon-owned terminals."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from tundra.cli.output import emit
from tundra.errors import UsageError
from tundra.ipc.client import BlockingClient
from tundra.ipc.errors import Lagged

__all__ = ["register", "parse_size"]


def parse_size(text: str) -> tuple[int, int]:
    """``COLSxROWS`` (e.g. ``120x40``) -> ``(rows, cols)``."""
    try:
        c, r = text.lower().split("x", 1)
        cols, rows = int(c), int(r)
    except ValueError:
        raise UsageError(f"invalid size {text!r}: expected COLSxROWS, e.g. 120x40") from None
    if not (1 <= rows <= 1000 and 1 <= cols <= 1000):
        raise UsageError(f"invalid size {text!r}: rows and cols must be 1-1000")
    return rows, cols


def _add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def register(sub: Any) -> None:
    term = sub.add_parser("term", help="daemon-owned terminals (PTYs)")
    tsub = term.add_subparsers(dest="term_cmd", metavar="COMMAND")
    tsub.required = True

    p = tsub.add_parser("new", help="start a terminal (default: your login shell)")
    p.add_argument("--name", help="a name to refer to it by")
    p.add_argument("--cwd", help="working directory (default: the current one)")
    p.add_argument("--size", help="COLSxROWS, e.g. 120x40 (default 80x24)")
    p.add_argument(
        "--ephemeral",
        action="store_true",
        help="kill it when no client has been attached for [terminals] reconnect_grace_secs",
    )
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    _add_json(p)
    p.set_defaults(func=cmd_new)

    p = tsub.add_parser("ls", help="list terminals")
    _add_json(p)
    p.set_defaults(func=cmd_ls)

    p = tsub.add_parser("show", help="one terminal's details")
    p.add_argument("id", help="id, unique id prefix, or name")
    _add_json(p)
    p.set_defaults(func=cmd_show)

    p = tsub.add_parser("send", help="type TEXT into a terminal")
    p.add_argument("id")
    p.add_argument("text")
    p.add_argument("--enter", action="store_true", help="press Enter after TEXT")
    _add_json(p)
    p.set_defaults(func=cmd_send)

    p = tsub.add_parser("output", help="print a terminal's output (scrollback)")
    p.add_argument("id")
    p.add_argument("--since", type=int, help="absolute byte offset to start from")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new output")
    _add_json(p)
    p.set_defaults(func=cmd_output)

    p = tsub.add_parser("resize", help="set a terminal's size")
    p.add_argument("id")
    p.add_argument("size", help="COLSxROWS, e.g. 120x40")
    _add_json(p)
    p.set_defaults(func=cmd_resize)

    p = tsub.add_parser("kill", help="kill a terminal (it stays listed as dead)")
    p.add_argument("id")
    _add_json(p)
    p.set_defaults(func=cmd_kill)

    p = tsub.add_parser("rm", help="kill a terminal if alive and forget it")
    p.add_argument("id")
    _add_json(p)
    p.set_defaults(func=cmd_rm)


def _age(ts: float) -> str:
    s = max(0, int(time.time() - ts))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _status(t: dict[str, Any]) -> str:
    if t["status"] != "dead":
        return str(t["status"])
    if t.get("exit_signal"):
        return f"dead (signal {t['exit_signal']})"
    return f"dead (exit {t.get('exit_code')})"


def _human_one(t: dict[str, Any]) -> str:
    rows = [
        ("id", t["id"]),
        ("name", t["name"] or "-"),
        ("status", _status(t)),
        ("command", " ".join(t["argv"])),
        ("cwd", t["cwd"]),
        ("pid", f"{t['pid']} (pgid {t['pgid']})"),
        ("size", f"{t['cols']}x{t['rows']}"),
        ("clients", str(t["clients"])),
        ("persistent", "yes" if t["persistent"] else "no (ephemeral)"),
        ("created", f"{_age(t['created_at'])} ago"),
        ("activity", f"{_age(t['last_activity'])} ago"),
        ("output", f"{t['offset']} bytes (scrollback from {t['start_offset']})"),
    ]
    return "\n".join(f"{k:<11}{v}" for k, v in rows)


def _human_list(data: dict[str, Any]) -> str:
    ts = data["terminals"]
    if not ts:
        return "no terminals"
    lines = [
        f"{'ID':<9} {'NAME':<12} {'STATUS':<18} {'PID':>7} {'CL':>2} {'SIZE':>7} {'AGE':>4}  COMMAND"
    ]
    for t in ts:
        lines.append(
            f"{t['id'][:8]:<9} {(t['name'] or '-')[:12]:<12} {_status(t)[:18]:<18} {t['pid']:>7} "
            f"{t['clients']:>2} {str(t['cols']) + 'x' + str(t['rows']):>7} {_age(t['created_at']):>4}  "
            + " ".join(t["argv"])[:60]
        )
    return "\n".join(lines)


def cmd_new(args: argparse.Namespace) -> int:
    argv = list(args.command or [])
    if argv and argv[0] == "--":
        argv = argv[1:]
    params: dict[str, Any] = {
        "cwd": args.cwd or os.getcwd(),
        "persistent": not args.ephemeral,
    }
    if argv:
        params["argv"] = argv
    if args.name:
        params["name"] = args.name
    if args.size:
        params["rows"], params["cols"] = parse_size(args.size)
    with BlockingClient() as c:
        info: dict[str, Any] = c.call("term.new", params)
    return emit(args, info, lambda t: f"{t['id']}")


def cmd_ls(args: argparse.Namespace) -> int:
    with BlockingClient() as c:
        data: dict[str, Any] = c.call("term.list", {})
    return emit(args, data, _human_list)


def cmd_show(args: argparse.Namespace) -> int:
    with BlockingClient() as c:
        info: dict[str, Any] = c.call("term.get", {"id": args.id})
    return emit(args, info, _human_one)


def cmd_send(args: argparse.Namespace) -> int:
    data = args.text.encode() + (b"\r" if args.enter else b"")
    with BlockingClient() as c:
        c.call("term.input", {"id": args.id, "data": data})
    return emit(args, {"sent": len(data)}, lambda _: "")


def cmd_output(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    with BlockingClient() as c:
        info: dict[str, Any] = c.call("term.get", {"id": args.id})
        tid: str = info["id"]
        if args.follow and not args.json and info["status"] != "dead":
            return _follow(c, tid, args.since)
        since = args.since
        chunks: list[bytes] = []
        first: int | None = None
        lost = 0
        while True:
            r: dict[str, Any] = c.call("term.output", {"id": tid, "since": since})
            if first is None:
                first, lost = r["start"], r["lost"]
            if not r["data"]:
                break
            chunks.append(r["data"])
            since = r["end"]
        data = b"".join(chunks)
    if args.json:
        text = data.decode("utf-8", "replace")
        return emit(args, {"start": first, "end": since, "lost": lost, "data": text})
    if lost:
        sys.stderr.write(f"[{lost} bytes before offset {first} have left the scrollback]\n")
    out.write(data)
    out.flush()
    return 0


def _follow(c: BlockingClient, tid: str, since: int | None) -> int:
    out = sys.stdout.buffer
    try:
        while True:
            try:
                since = _follow_once(c, tid, since, out)
                return 0
            except Lagged as e:
                # We printed too slowly and were dropped: resume after the last byte shown.
                since = int(e.details.get("offset", since or 0))
    except KeyboardInterrupt:
        return 130


def _follow_once(c: BlockingClient, tid: str, since: int | None, out: Any) -> int | None:
    with c.stream("term.attach", {"id": tid, "since": since}) as items:
        for item in items:
            kind = item.get("type")
            if kind == "output":
                out.write(item["data"])
                out.flush()
                since = item["offset"] + len(item["data"])
            elif kind == "gap":
                sys.stderr.write(f"\n[{item['lost_bytes']} bytes lost]\n")
            elif kind == "exit":
                sig = item.get("exit_signal")
                code = f"signal {sig}" if sig else str(item.get("exit_code"))
                sys.stderr.write(f"\n[exited: {code}]\n")
                break
    return since


def cmd_resize(args: argparse.Namespace) -> int:
    rows, cols = parse_size(args.size)
    with BlockingClient() as c:
        info: dict[str, Any] = c.call("term.resize", {"id": args.id, "rows": rows, "cols": cols})
    return emit(args, info, lambda t: f"{t['id'][:8]} resized to {t['cols']}x{t['rows']}")


def cmd_kill(args: argparse.Namespace) -> int:
    with BlockingClient() as c:
        info: dict[str, Any] = c.call("term.kill", {"id": args.id})
    return emit(args, info, lambda t: f"{t['id'][:8]} {_status(t)}")


def cmd_rm(args: argparse.Namespace) -> int:
    with BlockingClient() as c:
        tid: str = c.call("term.get", {"id": args.id})["id"]
        c.call("term.remove", {"id": tid})
    return emit(args, {"removed": tid}, lambda r: f"removed {r['removed'][:8]}")
