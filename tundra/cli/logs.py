"""`tundra logs [-f] [-n N] [--bridge] [-p LEVEL] [--json]`: journald under systemd, else files."""

from __future__ import annotations

import argparse
import os
import subprocess
from typing import Any

from tundra.errors import UsageError
from tundra.paths import TundraPaths
from tundra.service.logs import (
    LEVELS,
    follow_records,
    journalctl_command,
    log_files,
    tail_records,
    write_record,
)
from tundra.service.manager import unit_dir
from tundra.service.platform import probe_manager
from tundra.service.units import DAEMON_SERVICE

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "logs", help="show daemon (or bridge) logs: the journal under systemd, else log files"
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new records")
    p.add_argument(
        "-n", "--lines", type=int, default=50, metavar="N", help="last N records (default 50)"
    )
    p.add_argument(
        "--bridge", action="store_true", help="the bridge's logs instead of the daemon's"
    )
    p.add_argument(
        "-p",
        "--priority",
        metavar="LEVEL",
        choices=sorted(LEVELS),
        help="only this level and more severe (error, warning, info, debug...)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per record")
    p.add_argument(
        "--source",
        choices=["auto", "journal", "file"],
        default="auto",
        help="auto: the journal when tundra runs as a systemd service, else files",
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--user", dest="scope", action="store_const", const="user", help="user units (default)"
    )
    scope.add_argument(
        "--system", dest="scope", action="store_const", const="system", help="system units"
    )
    p.set_defaults(func=cmd_logs, scope="user")


def _use_journal(args: argparse.Namespace) -> bool:
    if args.source != "auto":
        return bool(args.source == "journal")
    if probe_manager(args.scope).manager != "systemd":
        return False
    # Only when the service is installed: a foreground daemon writes logs/daemon.log.
    return (unit_dir("systemd", args.scope) / DAEMON_SERVICE).exists()


def cmd_logs(args: argparse.Namespace) -> int:
    if args.lines < 0:
        raise UsageError(f"-n must be >= 0, got {args.lines}")
    if _use_journal(args):
        cmd = journalctl_command(
            args.scope,
            bridge=args.bridge,
            lines=args.lines,
            follow=args.follow,
            priority=args.priority,
            as_json=args.json,
        )
        try:
            return subprocess.call(cmd)
        except FileNotFoundError:
            raise UsageError("journalctl is not installed", hint="use --source file") from None
    paths = TundraPaths.from_env(dict(os.environ))
    files = log_files(paths, bridge=args.bridge)
    try:
        st = files[0].stat()
        start = (st.st_ino, st.st_size)
    except FileNotFoundError:
        start = (-1, 0)  # not there yet: follow it from its first byte once it appears
    for rec in tail_records(files, n=args.lines, priority=args.priority):
        write_record(rec, args.json)
    if args.follow:
        try:
            for rec in follow_records(files[0], priority=args.priority, start=start):
                write_record(rec, args.json)
        except KeyboardInterrupt:
            return 0
    return 0
