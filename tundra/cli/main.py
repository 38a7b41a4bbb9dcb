"""`tundra` entry point: argparse with one module per command group.

Each module in :data:`COMMAND_MODULES` exposes ``register(subparsers)``; its handlers take
the parsed args and return an exit code (0 ok, 1 failure, 2 usage/config error).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from tundra import __version__
from tundra.cli.output import print_error
from tundra.config.errors import ConfigError
from tundra.errors import TundraError, UsageError

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

COMMAND_MODULES: tuple[str, ...] = (
    "tundra.cli.core",
    "tundra.cli.config_cmd",
    "tundra.cli.completion",
    "tundra.cli.db",
    "tundra.cli.service",
    "tundra.cli.doctor",
    "tundra.cli.logs",
    "tundra.cli.diagnose",
    "tundra.cli.bridge",
    "tundra.cli.llm",
    "tundra.cli.task",
    "tundra.cli.agents",
    "tundra.cli.term",
    "tundra.cli.attach",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's own usage errors exit 2 with the usage line, as documented.
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tundra", description="Run AI coding agents and terminals.")
    parser.add_argument("--version", action="version", version=f"tundra {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code = func(args)
        return int(code or 0)
    except (ConfigError, UsageError) as err:
        print_error(err, as_json=getattr(args, "json", False))
        return 2
    except TundraError as err:
        print_error(err, as_json=getattr(args, "json", False))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `tundra ... | head`: the reader left; not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
