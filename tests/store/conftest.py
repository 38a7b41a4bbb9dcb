"""Store fixtures: a private MariaDB server (session-wide) and a ``store`` fixture that runs
every repository test against both engines (SQLite always; MariaDB when installed)."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from tests.store.mariadb import MariaDB, install_template, mariadb_binaries
from tests.support import need, short_tempdir
from tundra.config.schema import Config, StoreConfig
from tundra.paths import TundraPaths
from tundra.store.store import Store, open_store

PW_ENV = "TUNDRA_TEST_DB_PASSWORD"
_db_counter = itertools.count(1)


def need_mariadb() -> None:
    need(
        mariadb_binaries() is not None,
        "MariaDB server binaries (mariadbd, mariadb-install-db) not installed: "
        "`apt-get install -y mariadb-server` to run the MySQL-protocol store tests",
    )


@pytest.fixture(scope="session")
def mariadb_template() -> Iterator[Path]:
    need_mariadb()
    base = short_tempdir("mdt")
    try:
        yield install_template(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb(mariadb_template: Path) -> Iterator[MariaDB]:
    """One server shared by the repository tests (each test gets its own database)."""
    server = MariaDB(mariadb_template)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def mariadb_private(mariadb_template: Path) -> Iterator[MariaDB]:
    """A server of its own, for tests that kill or stop it."""
    server = MariaDB(mariadb_template)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def store_config(**store_fields: object) -> Config:
    base = {
        "password_env": PW_ENV,
        "write_retry_secs": 5.0,
        "backoff_base_secs": 0.05,
        "backoff_max_secs": 0.5,
    }
    base.update(store_fields)
    return Config(store=msgspec.convert(base, StoreConfig))


def unique_db() -> str:
    return f"t{next(_db_counter)}_{id(object()) % 100000}"


@pytest.fixture(params=["sqlite", "mysql"])
def engine_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_target(
    engine_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> dict[str, object]:
    """``open_store`` keyword arguments for a fresh database of the parametrized engine."""
    if engine_kind == "sqlite":
        return {"sqlite_path": tmp_path / "t.sqlite3"}
    server: MariaDB = request.getfixturevalue("mariadb")
    return {"url": server.url(unique_db()), "env": {PW_ENV: server.password}}


@pytest.fixture
async def store(db_target: dict[str, object], tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated store on a fresh database of the parametrized engine."""
    async with open_store(store_config(), TundraPaths(tmp_path / "home"), **db_target) as st:  # type: ignore[arg-type]
        yield st
