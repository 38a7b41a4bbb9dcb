"""`tundra db ...`: store status, migrations (apply, dry-run, rollback), Dolt log, backup.

These commands open the database directly with the daemon's config (they work with the
daemon stopped); ``db status`` also shows the running daemon's view of the store (state
``ready|connecting|unavailable`` and its last error) when a daemon answers.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from tundra.cli.output import emit
from tundra.config import load_config
from tundra.config.schema import Config
from tundra.errors import TundraError, UsageError
from tundra.paths import TundraPaths
from tundra.store.engine import Engine
from tundra.store.errors import StoreError
from tundra.store.migrations import Migrator
from tundra.store.mysql import MysqlEngine
from tundra.store.sqlite import SqliteEngine
from tundra.store.store import build_engine

__all__ = ["register"]


def register(subparsers: Any) -> None:
    db = subparsers.add_parser("db", help="database: status, migrate, rollback, log, backup")
    sub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND")
    db.set_defaults(func=lambda args: (db.print_help(), 2)[1])

    p = sub.add_parser(
        "status", help="engine, URL (no password), schema version, pending migrations, state"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("migrate", help="apply pending migrations")
    p.add_argument("--dry-run", action="store_true", help="print the SQL instead of running it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser(
        "rollback", help="revert migrations above version N (Dolt: reset to `pre-migration vN+1`)"
    )
    p.add_argument("--to", type=int, required=True, metavar="N")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("log", help="Dolt commit history of the database")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser(
        "backup", help="write a backup: SQLite file copy (online) or SQL dump (MySQL engines)"
    )
    p.add_argument("path", type=Path)
    p.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backup)


def _load() -> tuple[Config, TundraPaths]:
    paths = TundraPaths.from_env()
    return load_config(paths.config_file), paths


def _open() -> Engine:
    config, paths = _load()
    engine = build_engine(config, paths)
    engine.connect()
    return engine


def _daemon_view() -> dict[str, Any] | None:
    """The running daemon's store status, or None when no daemon answers."""
    from tundra.ipc.client import BlockingClient

    res: Any
    try:
        with BlockingClient(timeout=5) as c:
            res = c.call("store.status")
    except (TundraError, OSError):
        return None
    return res if isinstance(res, dict) else None


def cmd_status(args: argparse.Namespace) -> int:
    config, paths = _load()
    engine = build_engine(config, paths)
    out: dict[str, Any] = dict(engine.describe())
    daemon = _daemon_view()
    out["daemon"] = daemon
    out["state"] = daemon.get("state") if daemon else None
    code = 0
    try:
        engine.connect()
        st = Migrator(engine).status()
        out.update(
            version=st.version,
            latest=st.latest,
            pending=st.pending,
            interrupted=st.interrupted,
            problem=st.problem or None,
            reachable=True,
        )
        if out["state"] is None:
            out["state"] = "ready" if not st.problem and not st.pending else "unavailable"
    except StoreError as e:
        out.update(reachable=False, error=e.to_dict())
        if out["state"] is None:
            out["state"] = "unavailable"
        code = 1
    finally:
        engine.close()
    emit(args, out, _human_status)
    return code


def _human_status(d: dict[str, Any]) -> str:
    lines = [f"engine      {d['engine']}", f"url         {d['url']}", f"state       {d['state']}"]
    if d.get("reachable"):
        pending = ", ".join(f"v{v}" for v in d["pending"]) or "none"
        lines.append(f"version     v{d['version']} (code knows v{d['latest']})")
        lines.append(f"pending     {pending}")
        if d.get("interrupted"):
            lines.append(
                f"interrupted {', '.join(f'v{v}' for v in d['interrupted'])} (undone by the next migrate)"
            )
        if d.get("problem"):
            lines.append(f"problem     {d['problem']}")
    else:
        err = d.get("error") or {}
        lines.append(f"error       {err.get('message')}")
        if err.get("hint"):
            lines.append(f"hint        {err['hint']}")
    daemon = d.get("daemon")
    if daemon:
        lines.append(
            f"daemon      state={daemon.get('state')} reconnects={daemon.get('reconnects')}"
        )
        if daemon.get("last_error"):
            lines.append(f"last error  {daemon['last_error'].get('message')}")
    else:
        lines.append("daemon      not running")
    return "\n".join(lines)


def cmd_migrate(args: argparse.Namespace) -> int:
    engine = _open()
    try:
        migrator = Migrator(engine)
        if args.dry_run:
            st = migrator.status()
            if st.problem:
                raise StoreError(st.problem)
            sql = migrator.plan_sql()
            return emit(
                args,
                {"pending": st.pending, "sql": sql},
                lambda d: d["sql"] or "-- nothing to migrate (schema is current)",
            )
        t0 = time.monotonic()
        applied = migrator.migrate()
        st = migrator.status()
        return emit(
            args,
            {"applied": applied, "version": st.version, "seconds": round(time.monotonic() - t0, 3)},
            lambda d: (
                f"applied {', '.join(f'v{v}' for v in d['applied'])}; schema now v{d['version']}"
                if d["applied"]
                else f"nothing to migrate; schema is v{d['version']}"
            ),
        )
    finally:
        engine.close()


def cmd_rollback(args: argparse.Namespace) -> int:
    if args.to < 0:
        raise UsageError("--to must be >= 0")
    engine = _open()
    try:
        migrator = Migrator(engine)
        reverted = migrator.rollback(args.to)
        st = migrator.status()
        return emit(
            args,
            {"reverted": reverted, "version": st.version},
            lambda d: (
                f"reverted {', '.join(f'v{v}' for v in d['reverted'])}; schema now v{d['version']}"
                if d["reverted"]
                else f"nothing to roll back; schema is v{d['version']}"
            ),
        )
    finally:
        engine.close()


def cmd_log(args: argparse.Namespace) -> int:
    config, paths = _load()
    engine = build_engine(config, paths)
    try:
        if not isinstance(engine, SqliteEngine):
            engine.connect()
        entries = Migrator(engine).dolt_log(args.limit)
    finally:
        engine.close()
    return emit(
        args,
        {"commits": entries},
        lambda d: "\n".join(
            f"{c['commit'][:12]}  {c['date']}  {c['message']}" for c in d["commits"]
        ),
    )


def cmd_backup(args: argparse.Namespace) -> int:
    target: Path = args.path.expanduser().absolute()
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists; pass --force to overwrite it")
    engine = _open()
    tmp = target.with_name(target.name + ".partial")
    try:
        if isinstance(engine, SqliteEngine):
            tmp.unlink(missing_ok=True)
            engine.backup_to(tmp)
            kind = "sqlite"
            rows = None
        else:
            assert isinstance(engine, MysqlEngine)
            with open(tmp, "w", encoding="utf-8") as f:
                rows = engine.dump_sql(f)
            kind = "sql"
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        engine.close()
    return emit(
        args,
        {"path": str(target), "format": kind, "bytes": target.stat().st_size, "rows": rows},
        lambda d: f"backup written to {d['path']} ({d['format']}, {d['bytes']} bytes)",
    )
