"""The async store: engine + migrations + repositories + the ready/connecting/unavailable state.

:class:`Store` turns the blocking engine into the trio API of :mod:`tundra.store.api`:
calls run in worker threads behind the engine's CapacityLimiter; :meth:`Store.supervise`
connects (and migrates) with exponential backoff, and reconnects when a call finds the
connection gone. A call made while the store is not ready waits up to
``write_retry_secs`` for it and is retried (every repository write is idempotent), else
raises :class:`~tundra.store.errors.StoreUnavailable` -- a write is never silently dropped.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import trio

from tundra.config.errors import ConfigError, MissingDatabaseUrl
from tundra.config.schema import Config, DoltConfig, StoreConfig
from tundra.paths import TundraPaths
from tundra.store.api import StoreState
from tundra.store.engine import ConnectionLost, Engine, Session
from tundra.store.errors import (
    SchemaVersionMismatch,
    StoreError,
    StoreUnavailable,
)
from tundra.store.migrations import Migration, MigrationStatus, Migrator
from tundra.store.mysql import MysqlEngine, MysqlTarget
from tundra.store.repositories import (
    AgentRuns,
    AuditEvents,
    Settings,
    TaskEvents,
    Tasks,
    Terminals,
    Usage,
)
from tundra.store.sqlite import SqliteEngine

__all__ = ["Store", "open_store", "build_engine", "resolve_engine_kind", "parse_mysql_url"]

log = logging.getLogger("tundra.store")
T = TypeVar("T")


# -- configuration -> engine --------------------------------------------------------------


def resolve_engine_kind(config: Config) -> str:
    """``sqlite`` | ``mysql`` | ``dolt`` for this config (``auto``: dolt iff a [dolt] section)."""
    engine = config.store.engine
    if engine != "auto":
        return engine
    if config.dolt is not None:
        return "dolt"
    if config.store.url:
        return "mysql"
    return "sqlite"


def parse_mysql_url(url: str) -> tuple[str, int, str, str, str, str]:
    """``mysql://user[:pw]@host[:port]/db[?unix_socket=/p]`` -> host, port, user, pw, db, socket."""
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mysql+pymysql", "dolt", "mariadb"):
        raise ConfigError(
            f"config.toml: store.url: expected mysql://user@host:port/db, got scheme {parts.scheme!r}"
        )
    try:
        port = parts.port or 3306
    except ValueError:
        raise ConfigError("config.toml: store.url: invalid port") from None
    query = parse_qs(parts.query)
    return (
        parts.hostname or "127.0.0.1",
        port,
        unquote(parts.username or "root"),
        unquote(parts.password or ""),
        parts.path.lstrip("/") or "auto_tundra",
        (query.get("unix_socket") or [""])[0],
    )


def _read_password_file(path: Path) -> str:
    try:
        st = path.stat()
    except OSError as e:
        raise ConfigError(
            f"config.toml: store.password_file: cannot read {path}: {e.strerror}"
        ) from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise ConfigError(
            f"config.toml: store.password_file: {path} must not be readable by group/others "
            f"(mode {stat.S_IMODE(st.st_mode):04o})",
            hint=f"chmod 600 {path}",
        )
    return path.read_text().strip()


def _password(
    store: StoreConfig, dolt: DoltConfig | None, url_password: str, env: Mapping[str, str]
) -> str:
    if store.password_env:
        return env.get(store.password_env, "")
    if store.password_file:
        return _read_password_file(Path(store.password_file).expanduser())
    if dolt is not None and dolt.password_env:
        return env.get(dolt.password_env, "")
    return url_password


def sqlite_path_for(config: Config, paths: TundraPaths) -> Path:
    if config.store.sqlite_path:
        return Path(os.path.expandvars(config.store.sqlite_path)).expanduser().absolute()
    return paths.sqlite_file


def build_engine(
    config: Config, paths: TundraPaths, env: Mapping[str, str] | None = None
) -> Engine:
    """The engine the config asks for (no I/O yet). Raises ``MissingDatabaseUrl`` when a
    MySQL engine has neither ``[store] url`` nor a ``[dolt]`` section."""
    env = os.environ if env is None else env
    kind = resolve_engine_kind(config)
    sc = config.store
    if kind == "sqlite":
        return SqliteEngine(sqlite_path_for(config, paths), busy_timeout=sc.busy_timeout_secs)
    dolt = config.dolt
    if sc.url:
        host, port, user, pw, db, sock = parse_mysql_url(sc.url)
    elif dolt is not None or kind == "dolt":
        d = dolt or DoltConfig()
        host, port, user, pw, db, sock = d.host, d.port, d.user, "", d.database, ""
    else:
        raise MissingDatabaseUrl(
            f'ConfigError::MissingDatabaseUrl: [store] engine = "{kind}" needs a database URL',
            hint='set [store] url = "mysql://user@host:port/db" (password via [store] password_env), '
            "add a [dolt] section, or use the default SQLite store",
        )
    target = MysqlTarget(
        host=host,
        port=port,
        user=user,
        password=_password(sc, dolt, pw, env),
        database=db,
        unix_socket=sock,
        kind="dolt" if kind == "dolt" else "mysql",
        auto_commit=bool(dolt and dolt.auto_commit),
    )
    return MysqlEngine(
        target,
        pool_size=sc.pool_size,
        connect_timeout=sc.connect_timeout_secs,
        read_timeout=sc.read_timeout_secs,
        write_timeout=sc.write_timeout_secs,
    )


# -- the store ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    base: float = 0.5
    maximum: float = 30.0

    def delays(self) -> Callable[[], float]:
        delay = self.base

        def nxt() -> float:
            nonlocal delay
            out = delay
            delay = min(delay * 2, self.maximum)
            return out

        return nxt


class Store:
    """Engine + repositories with a connection state machine (see module docstring)."""

    def __init__(
        self,
        engine: Engine,
        *,
        migrations: list[Migration] | None = None,
        auto_migrate: bool = True,
        write_retry_secs: float = 10.0,
        backoff: Backoff | None = None,
        on_state: Callable[[StoreState, StoreError | None], None] | None = None,
        health_check_secs: float = 5.0,
    ) -> None:
        self.engine = engine
        self.migrator = Migrator(engine, migrations)
        self.auto_migrate = auto_migrate
        self.write_retry_secs = write_retry_secs
        self.backoff = backoff or Backoff()
        self._on_state = on_state
        self.health_check_secs = health_check_secs
        self._state: StoreState = "connecting"
        self.last_error: StoreError | None = None
        self.schema_version: int | None = None
        self.connects = 0
        self.reconnects = 0
        self._ready = trio.Event()
        self._lost = trio.Event()
        self._closed = False
        self._terminals = Terminals(self)
        self._tasks = Tasks(self)
        self._task_events = TaskEvents(self)
        self._agent_runs = AgentRuns(self)
        self._usage = Usage(self)
        self._events = AuditEvents(self)
        self._settings = Settings(self)

    # StoreAPI --------------------------------------------------------------------------
    @property
    def terminals(self) -> Terminals:
        return self._terminals

    @property
    def tasks(self) -> Tasks:
        return self._tasks

    @property
    def task_events(self) -> TaskEvents:
        return self._task_events

    @property
    def agent_runs(self) -> AgentRuns:
        return self._agent_runs

    @property
    def usage(self) -> Usage:
        return self._usage

    @property
    def events(self) -> AuditEvents:
        return self._events

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def state(self) -> StoreState:
        return self._state

    def _is_ready(self) -> bool:
        # A method, not an inline comparison: the state changes across awaits.
        return self._state == "ready"

    async def wait_ready(self, timeout: float | None = None) -> None:
        if self._state == "ready":
            return
        with trio.move_on_after(timeout if timeout is not None else float("inf")):
            while not self._is_ready():
                await self._ready.wait()
        if not self._is_ready():
            raise self._unavailable()

    # state machine ---------------------------------------------------------------------
    def _set_state(self, state: StoreState, error: StoreError | None) -> None:
        # Repeated failures with the same text are one state, not a flood of events.
        changed = state != self._state or (
            error is not None
            and (self.last_error is None or error.message != self.last_error.message)
        )
        self._state = state
        if state == "ready":
            self.last_error = None  # `tundra status` shows the error of the current outage only
        elif error is not None:
            self.last_error = error
        if state == "ready":
            self._ready.set()
        elif self._ready.is_set():
            self._ready = trio.Event()
        if changed and self._on_state is not None:
            self._on_state(state, error)

    def _unavailable(self) -> StoreUnavailable:
        err = self.last_error
        if isinstance(err, StoreUnavailable):
            # Keep the specific class (e.g. StoreConnectError with its "is dolt running?" hint).
            return type(err)(err.message, hint=err.hint, details=err.details)
        reason = str(err) if err else f"store is {self._state}"
        return StoreUnavailable(f"store is unavailable: {reason}", details={"state": self._state})

    def mark_lost(self, error: Exception) -> None:
        """A call found the connection gone: go ``unavailable`` and wake the reconnect loop."""
        err = error if isinstance(error, StoreError) else StoreError(str(error))
        if self._state == "ready":
            log.warning("store connection lost: %s", err)
            self._set_state("unavailable", err)
            self._lost.set()

    # calls -----------------------------------------------------------------------------
    async def run(self, fn: Callable[[Session], T], *, write: bool) -> T:
        """Run ``fn`` in one transaction in a worker thread; wait/retry across a reconnect."""
        deadline = trio.current_time() + self.write_retry_secs
        while True:
            if not self._is_ready():
                with trio.move_on_at(deadline):
                    while not self._is_ready():
                        await self._ready.wait()
                if not self._is_ready():
                    raise self._unavailable()
            try:
                return await trio.to_thread.run_sync(
                    partial(self.engine.call, fn, write=write),
                    limiter=self.engine.limiter_for(write),
                )
            except ConnectionLost as e:
                self.mark_lost(e.error)
                if trio.current_time() >= deadline:
                    raise self._unavailable() from None

    async def call_exclusive(self, fn: Callable[[], T]) -> T:
        """Run a blocking engine-level function (migrations, backup) under the write limiter."""
        try:
            return await trio.to_thread.run_sync(fn, limiter=self.engine.limiter_for(True))
        except ConnectionLost as e:
            self.mark_lost(e.error)
            raise self._unavailable() from None

    async def migration_status(self) -> MigrationStatus:
        return await self.call_exclusive(self.migrator.status)

    # connecting ------------------------------------------------------------------------
    async def connect_once(self) -> None:
        """Connect, then migrate (``auto_migrate``) or check the schema is current; ready.
        Raises the StoreError on failure (state becomes ``unavailable``)."""
        try:
            await trio.to_thread.run_sync(
                self.engine.connect, limiter=self.engine.limiter_for(True)
            )
            if self.auto_migrate:
                await self.call_exclusive(self.migrator.migrate)
            st = await self.call_exclusive(self.migrator.status)
            if st.problem or st.version != st.latest:
                raise SchemaVersionMismatch(
                    st.problem
                    or f"Schema version mismatch: expected v{st.latest}, found v{st.version}",
                    hint="run `tundra db migrate` ([store] auto_migrate is off)",
                )
            self.schema_version = st.version
        except ConnectionLost as e:
            self._set_state("unavailable", _as_store_error(e.error))
            raise _as_store_error(e.error) from None
        except StoreError as e:
            self._set_state("unavailable", e)
            raise
        except ConfigError:
            raise
        self.connects += 1
        if self.connects > 1:
            self.reconnects += 1
        if self._lost.is_set():
            self._lost = trio.Event()
        self._set_state("ready", None)
        log.info("store ready (%s, schema v%s)", self.engine.describe()["url"], self.schema_version)

    async def supervise(self) -> None:
        """Run forever: connect with exponential backoff, then reconnect whenever lost."""
        while True:
            if self._state != "ready":
                nxt = self.backoff.delays()
                while True:
                    try:
                        await self.connect_once()
                        break
                    except StoreError as e:
                        delay = nxt()
                        log.warning(
                            "store not ready: %s; retrying in %.1fs",
                            e,
                            delay,
                            extra={"fields": {"engine": self.engine.kind, "retry_in": delay}},
                        )
                        await trio.sleep(delay)
            await self._watch()

    async def _watch(self) -> None:
        """While ready: return when a call reports the connection lost, or when a periodic
        ping (MySQL engines; an idle pool would otherwise hide a dead server) fails."""
        if self.engine.dialect.name == "sqlite":
            await self._lost.wait()
            return
        while self._state == "ready":
            with trio.move_on_after(self.health_check_secs):
                await self._lost.wait()
                return
            try:
                await trio.to_thread.run_sync(
                    partial(self.engine.call, _ping, write=False),
                    limiter=self.engine.limiter_for(False),
                )
            except ConnectionLost as e:
                self.mark_lost(e.error)
                return

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.engine.close()

    def status(self) -> dict[str, Any]:
        d = self.engine.describe()
        return {
            "state": self._state,
            "engine": d["engine"],
            "url": d["url"],
            "schema_version": self.schema_version,
            "latest_version": self.migrator.latest,
            "last_error": self.last_error.to_dict() if self.last_error else None,
            "reconnects": self.reconnects,
        }


def _ping(s: Session) -> None:
    s.query("SELECT 1")


def _as_store_error(e: Exception) -> StoreError:
    return e if isinstance(e, StoreError) else StoreError(str(e))


@asynccontextmanager
async def open_store(
    config: Config | None = None,
    paths: TundraPaths | None = None,
    *,
    sqlite_path: Path | str | None = None,
    url: str | None = None,
    migrations: list[Migration] | None = None,
    wait: bool = True,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Store]:
    """A connected, migrated store for use outside the daemon (tests, CLI, tools).

    ``sqlite_path`` / ``url`` override the config. With ``wait`` (default) the first connect
    happens before this yields and its error is raised; the reconnect loop runs in the
    background until the block exits.
    """
    config = config or Config()
    paths = paths or TundraPaths.from_env()
    if sqlite_path is not None:
        config = _with_store(config, engine="sqlite", sqlite_path=str(sqlite_path))
    elif url is not None:
        config = _with_store(config, engine="mysql", url=url)
    engine = build_engine(config, paths, env)
    sc = config.store
    store = Store(
        engine,
        migrations=migrations,
        auto_migrate=sc.auto_migrate,
        write_retry_secs=sc.write_retry_secs,
        backoff=Backoff(sc.backoff_base_secs, sc.backoff_max_secs),
        health_check_secs=sc.health_check_secs,
    )
    try:
        if wait:
            await store.connect_once()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.supervise)
            try:
                yield store
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(store.close)


def _with_store(config: Config, **fields: Any) -> Config:
    import msgspec

    return msgspec.structs.replace(config, store=msgspec.structs.replace(config.store, **fields))
