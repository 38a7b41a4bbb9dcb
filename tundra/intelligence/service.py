"""The daemon's LLM service (``llm``): owns the shared httpx client, the router and usage,
and serves ``llm.ask`` / ``llm.stream`` / ``llm.profiles`` / ``llm.usage`` / ``llm.circuits`` /
``llm.reset`` over IPC (types in :mod:`tundra.intelligence.api`).

Bad ``harness.toml`` / ``api_profiles.json`` do not stop the daemon: the service starts,
reports the :class:`ConfigError` in ``status()`` and raises it from every ``llm.*`` call until
a reload (SIGHUP) reads valid files.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import httpx
import trio

from tundra.config.errors import ConfigError
from tundra.harness.config import HarnessConfig, load_harness
from tundra.intelligence.api import AskParams, AskResult, ResetParams, StreamDelta
from tundra.intelligence.errors import LlmError
from tundra.intelligence.profiles import ApiProfile, load_profiles
from tundra.intelligence.providers import make_http_client
from tundra.intelligence.router import Router
from tundra.intelligence.usage import UsageTracker
from tundra.ipc.registry import CallContext, MethodRegistry, NoParams, StreamSend

if TYPE_CHECKING:
    from tundra.config.schema import Config
    from tundra.daemon.app import Daemon

__all__ = ["LlmService", "LlmUnavailable"]

log = logging.getLogger("tundra.intelligence.service")


class LlmUnavailable(LlmError):
    code = "llm.unavailable"
    http_status = 503

    def __init__(self) -> None:
        super().__init__("LLM service is not ready yet")


class LlmService:
    name = "llm"

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.paths = daemon.paths
        self.usage = UsageTracker(daemon.paths.profile_usage_file)
        self.router: Router | None = None
        self._client: httpx.AsyncClient | None = None
        self._config_error: ConfigError | None = None
        self._reload = trio.Event()
        self._files_limiter = trio.CapacityLimiter(1)

    # -- Service protocol ---------------------------------------------------------------------
    def register(self, registry: MethodRegistry) -> None:
        registry.unary("llm.ask", AskParams, self._ask,
                       doc="One completion through the failover router -> AskResult.")
        registry.stream("llm.stream", AskParams, self._stream,
                        doc="Streamed completion: items {type: delta, text}; result AskResult.")
        registry.unary("llm.profiles", NoParams, self._profiles, doc="Configured profiles and problems.")
        registry.unary("llm.usage", NoParams, self._usage, doc="ProfileUsage per profile.")
        registry.unary("llm.circuits", NoParams, self._circuits,
                       doc="Breaker state, failure counts, cooldowns and bucket levels per profile.")
        registry.unary("llm.reset", ResetParams, self._reset,
                       doc="Close circuits, end cooldowns, re-enable quota-disabled profiles.")

    def _load_files(self) -> tuple[list[ApiProfile], HarnessConfig]:
        return load_profiles(self.paths.api_profiles_file), load_harness(self.paths.harness_file)

    async def _read_config(self) -> tuple[list[ApiProfile], HarnessConfig] | None:
        try:
            out = await trio.to_thread.run_sync(self._load_files, limiter=self._files_limiter)
        except ConfigError as exc:
            self._config_error = exc
            log.error("LLM configuration invalid: %s", exc)
            return None
        self._config_error = None
        return out

    async def run(self, daemon: Daemon, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.usage.load()
        loaded = await self._read_config()
        async with make_http_client() as client, trio.open_nursery() as nursery:
            self._client = client
            if loaded is not None:
                self.router = Router(loaded[0], loaded[1], client, self.usage, on_event=self._event)
            nursery.start_soon(self.usage.run_flusher)
            nursery.start_soon(self._reload_loop)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                nursery.cancel_scope.cancel()
                self.router = None
                self._client = None

    async def _reload_loop(self) -> None:
        while True:
            await self._reload.wait()
            self._reload = trio.Event()
            loaded = await self._read_config()
            if loaded is None or self._client is None:
                continue
            if self.router is None:
                self.router = Router(loaded[0], loaded[1], self._client, self.usage, on_event=self._event)
            else:
                self.router.configure(loaded[0], loaded[1])
            log.info("LLM profiles reloaded", extra={"fields": {"profiles": len(loaded[0])}})

    def _event(self, topic: str, data: dict[str, Any]) -> None:
        self.daemon.events.publish(topic, data)

    def status(self) -> dict[str, Any]:
        if self._config_error is not None:
            return {"state": "unavailable", "last_error": self._config_error.to_dict()}
        if self.router is None:
            return {"state": "starting"}
        circuits = self.router.circuits()
        return {
            "state": "ready",
            "profiles": len(self.router.states),
            "open_circuits": [c.profile for c in circuits if c.state != "closed"],
            "cooling": [c.profile for c in circuits if c.cooldown_until],
        }

    def reload(self, config: Config) -> None:
        # harness.toml / api_profiles.json are re-read off the loop by _reload_loop.
        self._reload.set()

    # -- handlers -----------------------------------------------------------------------------
    def _router(self) -> Router:
        if self._config_error is not None:
            raise self._config_error
        if self.router is None:
            raise LlmUnavailable()
        return self.router

    async def ask(self, params: AskParams, *, user: str | None = None, endpoint: str = "llm.ask") -> AskResult:
        """In-daemon API (tasks/agents use this directly)."""
        return await self._router().ask(params, user=user, endpoint=endpoint)

    async def _ask(self, ctx: CallContext, params: AskParams) -> AskResult:
        return await self._router().ask(params, user=str(ctx.peer_uid), endpoint="llm.ask")

    async def _stream(self, ctx: CallContext, params: AskParams, send: StreamSend) -> AskResult:
        async def on_delta(text: str) -> None:
            await send(StreamDelta(text=text))

        return await self._router().ask(params, user=str(ctx.peer_uid), endpoint="llm.stream",
                                        on_delta=on_delta)

    async def _profiles(self, ctx: CallContext, params: NoParams) -> dict[str, Any]:
        return {"profiles": self._router().profiles_info()}

    async def _usage(self, ctx: CallContext, params: NoParams) -> dict[str, Any]:
        return {"usage": self.usage.snapshot()}

    async def _circuits(self, ctx: CallContext, params: NoParams) -> dict[str, Any]:
        return {"circuits": self._router().circuits()}

    async def _reset(self, ctx: CallContext, params: ResetParams) -> dict[str, Any]:
        names = self._router().reset(params.profile)
        log.info("circuits reset", extra={"fields": {"profiles": names}})
        return {"reset": names}


