"""`tundra doctor [--json] [--strict] [--offline]`: one health check of the whole install."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from tundra.cli.output import emit
from tundra.service.doctor import (
    MIN_FREE_BYTES,
    MIN_FREE_ENV,
    DoctorOptions,
    format_report,
    run_doctor,
)

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="check daemon, socket, config, store, bridge, disk, keys, PTYs, limits (✓/!/✗ + fix)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings (!) too")
    p.add_argument("--offline", action="store_true", help="skip provider reachability requests")
    p.add_argument(
        "--min-free-gb",
        type=float,
        default=None,
        help=f"free-space threshold in TUNDRA_HOME (default 1; env {MIN_FREE_ENV} in bytes)",
    )
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    if args.min_free_gb is not None:
        min_free = int(args.min_free_gb * (1 << 30))
    else:
        raw = os.environ.get(MIN_FREE_ENV, "")
        min_free = int(raw) if raw.isdigit() else MIN_FREE_BYTES
    options = DoctorOptions(offline=args.offline, min_free_bytes=min_free)
    show_progress = not args.json and sys.stderr.isatty()

    def progress(name: str) -> None:
        sys.stderr.write(f"\rchecking {name:<12}")
        sys.stderr.flush()

    report = run_doctor(options=options, progress=progress if show_progress else None)
    if show_progress:
        sys.stderr.write("\r" + " " * 24 + "\r")
    emit(args, report, lambda r: format_report(r))
    return report.exit_code(strict=args.strict)
