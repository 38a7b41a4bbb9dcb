"""The daemon's ``store`` service: builds the engine from config, runs the managed Dolt server
when asked, connects/migrates in the background and reports its state.

It is started first and reports ``started`` at once: connecting to a MySQL server may take
a while (backoff up to 30 s) and the daemon keeps serving IPC meanwhile. Other services use
it as a :class:`~tundra.store.api.StoreAPI` (``daemon.service("store").tasks...``); their calls
wait (bounded) for ``ready``. State changes are published on the event bus as ``store.state``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from tundra.config.errors import ConfigError
from tundra.config.schema import Config
from tundra.ipc.registry import CallContext, MethodRegistry, NoParams
from tundra.store.api import StoreState
from tundra.store.dolt import DoltServer
from tundra.store.errors import StoreError, StoreUnavailable
from tundra.store.repositories import (
    AgentRuns,
    AuditEvents,
    Settings,
    TaskEvents,
    Tasks,
    Terminals,
    Usage,
)
from tundra.store.store import Backoff, Store, build_engine, resolve_engine_kind

if TYPE_CHECKING:
    from tundra.daemon.app import Daemon

__all__ = ["StoreService"]

log = logging.getLogger("tundra.store.service")


class StoreService:
    """See module docstring. Implements :class:`tundra.store.api.StoreAPI`."""

    name = "store"

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.config = daemon.config
        self._store: Store | None = None
        self._config_error: ConfigError | None = None
        self.dolt: DoltServer | None = None
        try:
            engine = build_engine(daemon.config, daemon.paths)
        except ConfigError as e:
            self._config_error = e
            return
        sc = daemon.config.store
        self._store = Store(
            engine,
            auto_migrate=sc.auto_migrate,
            write_retry_secs=sc.write_retry_secs,
            backoff=Backoff(sc.backoff_base_secs, sc.backoff_max_secs),
            on_state=self._publish_state,
            health_check_secs=sc.health_check_secs,
        )
        dolt_cfg = daemon.config.dolt
        if (
            dolt_cfg is not None
            and dolt_cfg.manage
            and resolve_engine_kind(daemon.config) == "dolt"
        ):
            self.dolt = DoltServer(
                dolt_cfg, daemon.paths, on_error=self._dolt_error, backoff_base=sc.backoff_base_secs
            )

    # -- StoreAPI ------------------------------------------------------------------------
    @property
    def store(self) -> Store:
        if self._store is None:
            assert self._config_error is not None
            raise StoreUnavailable(
                f"store is unavailable: {self._config_error.message}", hint=self._config_error.hint
            )
        return self._store

    @property
    def terminals(self) -> Terminals:
        return self.store.terminals

    @property
    def tasks(self) -> Tasks:
        return self.store.tasks

    @property
    def task_events(self) -> TaskEvents:
        return self.store.task_events

    @property
    def agent_runs(self) -> AgentRuns:
        return self.store.agent_runs

    @property
    def usage(self) -> Usage:
        return self.store.usage

    @property
    def events(self) -> AuditEvents:
        return self.store.events

    @property
    def settings(self) -> Settings:
        return self.store.settings

    @property
    def state(self) -> StoreState:
        return self._store.state if self._store is not None else "unavailable"

    async def wait_ready(self, timeout: float | None = None) -> None:
        await self.store.wait_ready(timeout)

    # -- Service -------------------------------------------------------------------------
    def register(self, registry: MethodRegistry) -> None:
        registry.unary(
            "store.status",
            NoParams,
            self._handle_status,
            doc="Store engine, state, schema version.",
        )

    async def _handle_status(self, ctx: CallContext, params: NoParams) -> dict[str, Any]:
        out = self.status()
        if self._store is not None and self._store.state == "ready":
            try:
                with trio.fail_after(self.config.store.read_timeout_secs):
                    st = await self._store.migration_status()
                out["pending"] = st.pending
                out["schema_version"] = st.version
            except (StoreError, trio.TooSlowError) as e:
                out["pending_error"] = str(e)
        return out

    def _publish_state(self, state: StoreState, error: StoreError | None) -> None:
        log.info("store state: %s%s", state, f" ({error})" if error else "")
        self.daemon.events.publish(
            "store.state", {"state": state, "error": error.to_dict() if error else None}
        )

    def _dolt_error(self, err: StoreError) -> None:
        if self._store is not None and self._store.state != "ready":
            self._store._set_state("unavailable", err)

    async def run(
        self, daemon: Daemon, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        store = self._store
        if store is None:
            log.error("store not configured: %s", self._config_error)
            task_status.started()
            await trio.sleep_forever()
            return
        try:
            if store.engine.kind == "sqlite":
                # Local and quick: be ready before later services start, unless it fails.
                try:
                    await store.connect_once()
                except StoreError as e:
                    log.error("store: %s", e)
            task_status.started()
            async with trio.open_nursery() as nursery:
                if self.dolt is not None:
                    await nursery.start(self.dolt.run)
                nursery.start_soon(store.supervise)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(store.close)

    def status(self) -> dict[str, Any]:
        if self._store is None:
            assert self._config_error is not None
            return {
                "state": "unavailable",
                "engine": self.config.store.engine,
                "last_error": self._config_error.to_dict(),
            }
        out = self._store.status()
        if self.dolt is not None:
            out["dolt_server"] = self.dolt.status()
        return out

    def reload(self, config: Config) -> None:
        # Engine, URL and pool size need a restart; nothing here changes live.
        if config.store != self.config.store or config.dolt != self.config.dolt:
            log.warning("store settings changed; restart the daemon to apply them")
