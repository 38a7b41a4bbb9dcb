"""`tundra diagnose [--output FILE]`: a redacted .tar.gz of logs, config, doctor and status."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tundra.cli.output import emit
from tundra.service.diagnose import LOG_BYTES_DEFAULT, BundleResult, build_bundle

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "diagnose", help="write a diagnostics bundle (.tar.gz) with secrets redacted"
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        type=Path,
        help="bundle path (default ./tundra-diagnostics-<time>.tar.gz)",
    )
    p.add_argument(
        "--log-mb",
        type=float,
        default=LOG_BYTES_DEFAULT / (1 << 20),
        help="last N MB of each log file (default 5)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_diagnose)


def _human(r: BundleResult) -> str:
    lines = [f"wrote {r.path} ({r.bytes / 1024:.1f} KiB, {len(r.files)} files)"]
    total = sum(r.redactions.values())
    where = ", ".join(f"{k} ({v})" for k, v in r.redactions.items())
    names = ", ".join(r.omitted_env) or "none"
    lines.append(
        f"redacted: {total} secret value(s)"
        + (f" in {where}" if where else "")
        + f"; key/token variables listed by name only: {names}"
    )
    return "\n".join(lines)


def cmd_diagnose(args: argparse.Namespace) -> int:
    output = args.output or Path(f"tundra-diagnostics-{time.strftime('%Y%m%d-%H%M%S')}.tar.gz")

    def progress(i: int, n: int, label: str) -> None:
        sys.stderr.write(f"[{i}/{n}] {label}...\n")
        sys.stderr.flush()

    result = build_bundle(
        output, log_bytes=int(args.log_mb * (1 << 20)), progress=None if args.json else progress
    )
    return emit(args, result, _human)
