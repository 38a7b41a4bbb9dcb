"""Migrations on both engines: fresh, incremental, failed, interrupted (process killed),
newer-than-code, checksum mismatch, rollback, dry-run SQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store.conftest import PW_ENV
from tests.support import REPO
from tundra.config.schema import Config
from tundra.paths import TundraPaths
from tundra.store.engine import Engine, Session
from tundra.store.errors import MigrationChecksumMismatch, MigrationFailed, SchemaVersionMismatch
from tundra.store.migrations import Migrator, load_migrations
from tundra.store.store import _with_store, build_engine

M1 = """-- first
-- migrate:up
CREATE TABLE a (id INTEGER NOT NULL PRIMARY KEY, v VARCHAR(10) NOT NULL){{TABLE_OPTIONS}};
-- migrate:down
DROP TABLE IF EXISTS a;
"""
M2 = """-- migrate:up
CREATE TABLE b (id INTEGER NOT NULL PRIMARY KEY){{TABLE_OPTIONS}};
ALTER TABLE a ADD COLUMN w INTEGER NULL;
-- migrate:down
ALTER TABLE a DROP COLUMN w;
DROP TABLE IF EXISTS b;
"""
M3 = """-- migrate:up
CREATE TABLE c (id {{AUTO_ID}}, note VARCHAR(20) NOT NULL){{TABLE_OPTIONS}};
-- migrate:down
DROP TABLE IF EXISTS c;
"""
M2_BAD = """-- migrate:up
CREATE TABLE b (id INTEGER NOT NULL PRIMARY KEY){{TABLE_OPTIONS}};
INSERT INTO no_such_table VALUES (1);
-- migrate:down
DROP TABLE IF EXISTS b;
"""


def write_migrations(d: Path, *bodies: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    names = ["first", "second", "third", "fourth"]
    for i, body in enumerate(bodies, start=1):
        (d / f"{i:04d}_{names[i - 1]}.sql").write_text(body)
    return d


@pytest.fixture
def engine(db_target: dict[str, object], tmp_path: Path) -> Iterator[Engine]:
    config = Config()
    if "sqlite_path" in db_target:
        config = _with_store(config, engine="sqlite", sqlite_path=str(db_target["sqlite_path"]))
    else:
        config = _with_store(config, engine="mysql", url=str(db_target["url"]), password_env=PW_ENV)
    eng = build_engine(config, TundraPaths(tmp_path / "home"), db_target.get("env") or {})  # type: ignore[arg-type]
    eng.connect()
    try:
        yield eng
    finally:
        eng.close()


def tables(engine: Engine) -> set[str]:
    def read(s: Session) -> set[str]:
        if engine.dialect.name == "sqlite":
            rows = s.query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite!_%' ESCAPE '!'"
            )
        else:
            rows = s.query("SHOW TABLES")
        return {str(r[0]) for r in rows}

    return engine.exclusive(read)


def columns(engine: Engine, table: str) -> set[str]:
    def read(s: Session) -> set[str]:
        if engine.dialect.name == "sqlite":
            return {str(r[1]) for r in s.query(f"PRAGMA table_info({table})")}
        return {str(r[0]) for r in s.query(f"SHOW COLUMNS FROM {table}")}

    return engine.exclusive(read)


def test_fresh_database_gets_the_real_schema(engine: Engine) -> None:
    m = Migrator(engine)
    assert m.status().version == 0 and m.status().pending == [1]
    assert m.migrate() == [1]
    assert {
        "terminals",
        "tasks",
        "task_events",
        "agent_runs",
        "profile_usage",
        "events",
        "settings",
        "schema_migrations",
    } <= tables(engine)
    st = m.status()
    assert (st.version, st.pending, st.problem) == (1, [], "")
    assert st.applied[0]["checksum"] == load_migrations()[0].checksum
    assert m.migrate() == []  # idempotent


def test_incremental_migration_applies_only_new_versions(engine: Engine, tmp_path: Path) -> None:
    d = write_migrations(tmp_path / "m", M1)
    assert Migrator(engine, load_migrations(d)).migrate() == [1]
    write_migrations(d, M1, M2, M3)
    m = Migrator(engine, load_migrations(d))
    assert m.status().pending == [2, 3]
    assert m.migrate(target=2) == [2]
    assert m.status().version == 2 and "c" not in tables(engine)
    assert m.migrate() == [3]
    assert {"a", "b", "c"} <= tables(engine) and "w" in columns(engine, "a")


def test_failed_migration_leaves_previous_version(engine: Engine, tmp_path: Path) -> None:
    d = write_migrations(tmp_path / "m", M1, M2_BAD)
    m = Migrator(engine, load_migrations(d))
    with pytest.raises(MigrationFailed, match=r"^Migration failed: v2 \(second\)"):
        m.migrate()
    st = m.status()
    assert (st.version, st.pending, st.interrupted) == (1, [2], [])
    assert "b" not in tables(engine), "the half-applied migration was not undone"
    # Fixed file -> applies cleanly.
    write_migrations(d, M1, M2)
    assert Migrator(engine, load_migrations(d)).migrate() == [2]


def test_database_newer_than_code_is_refused_untouched(engine: Engine, tmp_path: Path) -> None:
    d = write_migrations(tmp_path / "m", M1, M2, M3)
    Migrator(engine, load_migrations(d)).migrate()
    older = Migrator(engine, load_migrations(write_migrations(tmp_path / "old", M1, M2)))
    before = tables(engine)
    with pytest.raises(
        SchemaVersionMismatch, match=r"^Schema version mismatch: expected v2, found v3$"
    ):
        older.migrate()
    with pytest.raises(SchemaVersionMismatch):
        older.rollback(1)
    assert tables(engine) == before
    assert older.status().problem == "Schema version mismatch: expected v2, found v3"


def test_changed_checksum_of_applied_migration_is_an_error(engine: Engine, tmp_path: Path) -> None:
    d = write_migrations(tmp_path / "m", M1)
    Migrator(engine, load_migrations(d)).migrate()
    write_migrations(d, M1.replace("VARCHAR(10)", "VARCHAR(11)"), M2)
    m = Migrator(engine, load_migrations(d))
    with pytest.raises(
        MigrationChecksumMismatch,
        match=r"v1 \(first\) was applied with [0-9a-f]{12} but the file now has",
    ):
        m.migrate()
    assert "b" not in tables(engine)


def test_rollback_runs_down_migrations(engine: Engine, tmp_path: Path) -> None:
    d = write_migrations(tmp_path / "m", M1, M2, M3)
    m = Migrator(engine, load_migrations(d))
    m.migrate()
    assert m.rollback(1) == [3, 2]
    assert m.status().version == 1
    assert (
        "b" not in tables(engine) and "c" not in tables(engine) and "w" not in columns(engine, "a")
    )
    assert m.rollback(1) == []
    assert m.migrate() == [2, 3]
    assert m.rollback(0) == [3, 2, 1]
    assert not ({"a", "b", "c"} & tables(engine))


def test_dry_run_sql_is_filled_for_the_engine(engine: Engine, tmp_path: Path) -> None:
    d = write_migrations(tmp_path / "m", M1, M3)
    m = Migrator(engine, load_migrations(d))
    sql = m.plan_sql()
    assert "-- v1 (first)" in sql and "-- v2 (third)" not in sql and "{{" not in sql
    if engine.dialect.name == "mysql":
        assert "AUTO_INCREMENT" in sql and "ENGINE=InnoDB" in sql
    else:
        assert "AUTOINCREMENT" in sql
    assert m.status().version == 0, "dry run must not apply anything"


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tundra.config.schema import Config
    from tundra.paths import TundraPaths
    from tundra.store.migrations import Migrator, load_migrations
    from tundra.store.store import _with_store, build_engine

    kind, target, mig_dir, marker = sys.argv[1:5]
    if kind == "sqlite":
        cfg = _with_store(Config(), engine="sqlite", sqlite_path=target)
    else:
        cfg = _with_store(Config(), engine="mysql", url=target, password_env="{pw}")
    engine = build_engine(cfg, TundraPaths(Path(marker).parent))
    engine.connect()
    if kind == "sqlite":
        def pause():
            Path(marker).write_text("in migration")
            time.sleep(120)
            return 0
        engine._writer.conn.create_function("tundra_test_pause", 0, pause)
    Migrator(engine, load_migrations(Path(mig_dir))).migrate()
    """
).replace("{pw}", PW_ENV)


def test_killed_during_migration_leaves_previous_version(
    engine: Engine, db_target: dict[str, object], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    mysql = engine.dialect.name == "mysql"
    pause = "SELECT SLEEP(60)" if mysql else "SELECT tundra_test_pause()"
    slow = f"""-- migrate:up
CREATE TABLE b (id INTEGER NOT NULL PRIMARY KEY){{{{TABLE_OPTIONS}}}};
{pause};
CREATE TABLE b2 (id INTEGER NOT NULL PRIMARY KEY){{{{TABLE_OPTIONS}}}};
-- migrate:down
DROP TABLE IF EXISTS b2;
DROP TABLE IF EXISTS b;
"""
    d = write_migrations(tmp_path / "m", M1)
    Migrator(engine, load_migrations(d)).migrate()
    write_migrations(d, M1, slow)
    marker = tmp_path / "marker"
    target = str(db_target.get("url") or db_target.get("sqlite_path"))
    env = dict(os.environ, PYTHONPATH=str(REPO), **(db_target.get("env") or {}))  # type: ignore[arg-type]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILL_SCRIPT,
            "mysql" if mysql else "sqlite",
            target,
            str(d),
            str(marker),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        # In the middle of v2: sqlite -> the pause function ran; mysql -> the first DDL committed.
        while not (marker.exists() if not mysql else "b" in tables(engine)):
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "migration never reached its pause"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
    if mysql:
        server = request.getfixturevalue("mariadb")
        for row in server.admin(
            "SELECT id FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP%'"
        ):
            server.admin(f"KILL {int(row[0])}")  # type: ignore[call-overload]

    m = Migrator(engine, load_migrations(d))
    st = m.status()
    assert st.version == 1 and st.pending == [2]
    if mysql:
        assert st.interrupted == [2]
    else:
        assert "b" not in tables(engine), "SQLite rolled the interrupted transaction back"
    # The next run undoes what was left and applies v2 cleanly.
    fixed = slow.replace(pause + ";\n", "")
    write_migrations(d, M1, fixed)
    m = Migrator(engine, load_migrations(d))
    # The file changed, but v2 was never recorded, so there is no checksum conflict.
    assert m.migrate() == [2]
    assert {"b", "b2"} <= tables(engine)
    assert m.status().interrupted == []
