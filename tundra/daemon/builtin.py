"""IPC methods the daemon itself answers: ping, status, events.subscribe, daemon.*."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import msgspec

from tundra.ipc.errors import Lagged
from tundra.ipc.registry import CallContext, NoParams, StreamSend

if TYPE_CHECKING:
    from tundra.daemon.app import Daemon

__all__ = ["register_builtin_methods", "StatusInfo", "PingResult", "SubscribeParams"]


class PingResult(msgspec.Struct, kw_only=True):
    pong: bool = True
    pid: int
    version: str
    time: float


class StatusInfo(msgspec.Struct, kw_only=True):
    pid: int
    version: str
    uptime_secs: float
    started_at: float
    environment: str
    socket: str
    home: str
    store: dict[str, Any]
    services: dict[str, dict[str, Any]]
    ipc: dict[str, Any]
    methods: int


class SubscribeParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    topics: list[str] = msgspec.field(default_factory=list)
    """Topic prefixes (``terminal.``, ``task.``); empty = everything."""


def status_of(daemon: Daemon) -> StatusInfo:
    services: dict[str, dict[str, Any]] = {}
    for name, svc in daemon.services.items():
        try:
            services[name] = svc.status()
        except Exception as exc:  # status must always answer
            services[name] = {"state": "error", "error": str(exc)}
    store = services.get("store") or {"state": "not running", "engine": None}
    runtime = getattr(daemon, "runtime", None)
    ipc = runtime.ipc.status() if runtime is not None and runtime.ipc is not None else {}
    return StatusInfo(
        pid=os.getpid(),
        version=daemon.version,
        uptime_secs=round(time.time() - daemon.started_at, 3),
        started_at=daemon.started_at,
        environment=daemon.config.general.environment,
        socket=daemon.socket_path,
        home=str(daemon.paths.home),
        store=store,
        services=services,
        ipc=ipc,
        methods=len(daemon.registry.names()),
    )


def register_builtin_methods(daemon: Daemon) -> None:
    reg = daemon.registry

    async def ping(ctx: CallContext, params: NoParams) -> PingResult:
        """Liveness check."""
        return PingResult(pid=os.getpid(), version=daemon.version, time=time.time())

    async def status(ctx: CallContext, params: NoParams) -> StatusInfo:
        """pid, version, uptime, environment, socket, store and service states."""
        return status_of(daemon)

    async def methods(ctx: CallContext, params: NoParams) -> dict[str, Any]:
        """Every IPC method with its kind and docstring."""
        out = {}
        for name in reg.names():
            spec = reg.get(name)
            assert spec is not None
            out[name] = {"stream": spec.streaming, "doc": spec.doc.strip().splitlines()[0] if spec.doc.strip() else ""}
        return {"methods": out}

    async def subscribe(ctx: CallContext, params: SubscribeParams, send: StreamSend) -> dict[str, Any]:
        """Stream daemon events whose topic starts with one of `topics`."""
        async with daemon.events.subscribe(tuple(params.topics)) as recv:
            async for ev in recv:
                await send(ev)
        raise Lagged("event subscriber fell behind and was dropped; subscribe again")

    async def stop(ctx: CallContext, params: NoParams) -> dict[str, Any]:
        """Graceful shutdown, as on SIGTERM."""
        runtime = getattr(daemon, "runtime", None)
        if runtime is not None:
            runtime.request_stop(f"requested over IPC by pid {ctx.peer_pid}")
        return {"stopping": True}

    async def reload(ctx: CallContext, params: NoParams) -> dict[str, Any]:
        """Re-read config.toml, as on SIGHUP."""
        runtime = getattr(daemon, "runtime", None)
        if runtime is None:
            return {"reloaded": False}
        result: dict[str, Any] = await runtime.reload()
        return result

    reg.unary("ping", NoParams, ping, inline=True)
    reg.unary("status", NoParams, status)
    reg.unary("daemon.methods", NoParams, methods, inline=True)
    reg.stream("events.subscribe", SubscribeParams, subscribe)
    reg.unary("daemon.stop", NoParams, stop)
    reg.unary("daemon.reload", NoParams, reload)
