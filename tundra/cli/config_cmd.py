"""`tundra config validate|init|show|path`."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from tundra.cli.output import emit
from tundra.config import ConfigError, load_config
from tundra.config.example import render_example, render_toml
from tundra.paths import TundraPaths

__all__ = ["register", "validate_all", "EXTRA_VALIDATORS"]

# Other config files are validated by their owners: "module:function(paths) -> None",
# raising ConfigError. Modules that are not installed/built yet are skipped.
EXTRA_VALIDATORS: tuple[tuple[str, str], ...] = (
    ("config/harness.toml", "tundra.harness.config:validate_file"),
    ("config/api_profiles.json", "tundra.intelligence.profiles:validate_file"),
    ("config/agents.toml", "tundra.agents.registry:validate_file"),
)


def register(sub: Any) -> None:
    c = sub.add_parser("config", help="validate, create or show the configuration")
    csub = c.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    v = csub.add_parser("validate", help="check every config file (exit 0 valid, 2 invalid)")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=lambda a: validate_all(as_json=a.json))
    i = csub.add_parser("init", help="write a commented config.toml with every key")
    i.add_argument("--force", action="store_true", help="overwrite an existing file")
    i.add_argument("--stdout", action="store_true", help="print instead of writing")
    i.set_defaults(func=cmd_init)
    s = csub.add_parser("show", help="print the effective configuration")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)
    p = csub.add_parser("path", help="print where each file lives")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_path)


def validate_all(*, as_json: bool = False) -> int:
    paths = TundraPaths.from_env()
    results: list[dict[str, Any]] = []
    try:
        load_config(paths.config_file)
        results.append({"file": str(paths.config_file), "ok": True,
                        "exists": paths.config_file.exists()})
    except ConfigError as err:
        results.append({"file": str(paths.config_file), "ok": False, "error": err.message,
                        "hint": err.hint, **{k: v for k, v in err.details.items() if k in ("line", "field")}})
    for rel, target in EXTRA_VALIDATORS:
        module_name, _, func_name = target.partition(":")
        try:
            func = getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError):
            continue
        file = paths.home / rel
        try:
            func(paths)
            results.append({"file": str(file), "ok": True, "exists": file.exists()})
        except ConfigError as err:
            results.append({"file": str(file), "ok": False, "error": err.message, "hint": err.hint})
    ok = all(r["ok"] for r in results)
    if as_json:
        sys.stdout.write(json.dumps({"valid": ok, "files": results}, indent=2) + "\n")
    else:
        for r in results:
            if r["ok"]:
                note = "" if r.get("exists") else " (absent: defaults)"
                print(f"✓ {r['file']}{note}")
            else:
                print(f"✗ {r['error']}")
                if r.get("hint"):
                    print(f"  hint: {r['hint']}")
    return 0 if ok else 2


def cmd_init(args: argparse.Namespace) -> int:
    text = render_example()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    paths = TundraPaths.from_env()
    target: Path = paths.config_file
    if target.exists() and not args.force:
        raise ConfigError(f"{target} already exists", hint="use --force to overwrite, or --stdout to print")
    paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = target.with_suffix(".toml.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, target)
    print(f"wrote {target}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    config = load_config(TundraPaths.from_env().config_file)
    if args.json:
        return emit(args, msgspec.to_builtins(config))
    sys.stdout.write(render_toml(config))
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    from tundra.ipc.client import default_socket_path

    p = TundraPaths.from_env()
    data = {
        "home": str(p.home), "config": str(p.config_file), "harness": str(p.harness_file),
        "api_profiles": str(p.api_profiles_file), "data": str(p.data_dir), "logs": str(p.logs_dir),
        "lock": str(p.lock_file), "socket": str(default_socket_path()),
    }
    return emit(args, data, lambda d: "\n".join(f"{k:<13}{v}" for k, v in d.items()))
