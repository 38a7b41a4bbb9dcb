"""`tundra db` commands as a user runs them (subprocess, temp TUNDRA_HOME)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.store.conftest import PW_ENV
from tests.store.mariadb import MariaDB
from tests.support import REPO
from tundra.config.errors import ConfigError
from tundra.config.schema import Config, StoreConfig
from tundra.paths import TundraPaths
from tundra.store.mysql import MysqlEngine
from tundra.store.store import build_engine


def tundra(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TUNDRA_")}
    full.update(TUNDRA_HOME=str(home), TUNDRA_SOCKET=str(home / "none.sock"), PYTHONPATH=str(REPO))
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tundra", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sqlite_status_migrate_backup_rollback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    st = json.loads(tundra(home, "db", "status", "--json").stdout)
    assert (st["engine"], st["version"], st["pending"], st["daemon"]) == ("sqlite", 0, [1], None)

    dry = tundra(home, "db", "migrate", "--dry-run")
    assert dry.returncode == 0 and "CREATE TABLE tasks" in dry.stdout and "{{" not in dry.stdout
    assert json.loads(tundra(home, "db", "status", "--json").stdout)["version"] == 0

    mig = tundra(home, "db", "migrate")
    assert mig.returncode == 0 and "applied v1; schema now v1" in mig.stdout
    human = tundra(home, "db", "status").stdout
    assert "version     v1 (code knows v1)" in human and "pending     none" in human

    db = home / "data" / "tundra.sqlite3"
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO settings (name, value, updated_at) VALUES ('k', '42', 0)")
    out = tmp_path / "b.sqlite3"
    bk = tundra(home, "db", "backup", str(out))
    assert bk.returncode == 0, bk.stderr
    assert (out.stat().st_mode & 0o777) == 0o600
    with sqlite3.connect(out) as c:
        assert c.execute("SELECT value FROM settings WHERE name = 'k'").fetchone() == ("42",)
    again = tundra(home, "db", "backup", str(out))
    assert again.returncode == 2 and "--force" in again.stderr

    log = tundra(home, "db", "log")
    assert log.returncode == 1 and "error: not a Dolt database: sqlite:///" in log.stderr

    rb = tundra(home, "db", "rollback", "--to", "0")
    assert rb.returncode == 0 and "reverted v1; schema now v0" in rb.stdout


def test_mysql_status_hides_password_and_backup_is_loadable_sql(
    mariadb: MariaDB, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[store]\nurl = "mysql://tundra:{mariadb.password}@127.0.0.1:{mariadb.port}/clidb"\n'
    )
    assert tundra(home, "db", "migrate").returncode == 0
    st = tundra(home, "db", "status", "--json")
    assert mariadb.password not in st.stdout
    data = json.loads(st.stdout)
    assert data["url"] == f"mysql://tundra@127.0.0.1:{mariadb.port}/clidb" and data["version"] == 1

    mariadb.admin(
        "INSERT INTO clidb.settings (name, value, updated_at) VALUES ('quote', '\"it''s\"', 1.5)"
    )
    dump = tmp_path / "dump.sql"
    bk = tundra(home, "db", "backup", str(dump))
    assert bk.returncode == 0, bk.stderr
    text = dump.read_text()
    assert "CREATE TABLE `settings`" in text and "INSERT INTO `schema_migrations`" in text

    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        pytest.skip("no mariadb client to load the dump with")
    mariadb.admin("CREATE DATABASE restored")
    with dump.open() as f:
        load = subprocess.run(
            [client, "--no-defaults", f"--socket={mariadb.socket}", "-uroot", "restored"],
            stdin=f,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert load.returncode == 0, load.stderr
    assert mariadb.admin("SELECT value FROM restored.settings WHERE name = 'quote'") == [
        ('"it\'s"',)
    ]
    assert mariadb.admin("SELECT version FROM restored.schema_migrations") == [(1,)]


def test_status_exit_1_and_hint_when_server_down(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[dolt]\nport = 1\n")
    res = tundra(home, "db", "status")
    assert res.returncode == 1
    assert "state       unavailable" in res.stdout
    assert "error       Can't connect to MySQL server on '127.0.0.1:1'" in res.stdout
    assert "is dolt sql-server running?" in res.stdout


def test_password_file_must_be_private(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    pw.chmod(0o644)
    config = Config(store=StoreConfig(url="mysql://u@h/d", password_file=str(pw)))
    with pytest.raises(ConfigError, match="must not be readable by group/others"):
        build_engine(config, TundraPaths(tmp_path))
    pw.chmod(0o600)
    engine = build_engine(config, TundraPaths(tmp_path))
    assert isinstance(engine, MysqlEngine) and engine.target.password == "s3cret"
    assert "s3cret" not in engine.describe()["url"]


def test_password_env_wins_and_url_password_is_never_shown(tmp_path: Path) -> None:
    config = Config(store=StoreConfig(url="mysql://u:inurl@h:3307/d", password_env=PW_ENV))
    engine = build_engine(config, TundraPaths(tmp_path), {PW_ENV: "fromenv"})
    assert isinstance(engine, MysqlEngine)
    assert engine.target.password == "fromenv"
    assert engine.describe()["url"] == "mysql://u@h:3307/d"
