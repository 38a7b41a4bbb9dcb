"""The REST API on top of the daemon's IPC methods (terminals, tasks, LLM, health, metrics).

Each handler takes the parsed :class:`~tundra.bridge.http.HttpRequest` and the path
parameters and returns an :class:`~tundra.bridge.http.HttpResponse`; errors are raised as
:class:`~tundra.errors.TundraError` and rendered once by the server.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from tundra import __version__
from tundra.bridge.errors import BadRequest, RouteNotFound
from tundra.bridge.http import HttpRequest, HttpResponse, json_response

if TYPE_CHECKING:
    from tundra.bridge.server import BridgeApp

__all__ = ["Route", "build_routes", "CreateTerminalBody", "ResizeBody"]

Handler = Callable[["BridgeApp", HttpRequest, dict[str, str]], Awaitable[HttpResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    """Path with ``{name}`` placeholders; also the metrics label."""
    handler: Handler
    auth: bool = True
    regex: re.Pattern[str] | None = None

    def match(self, path: str) -> dict[str, str] | None:
        assert self.regex is not None
        m = self.regex.fullmatch(path)
        return m.groupdict() if m else None


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern))


class CreateTerminalBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    command: list[str] | None = None
    cwd: str | None = None
    rows: int | None = None
    cols: int | None = None
    name: str | None = None
    persistent: bool = False
    """Browser-created terminals are ephemeral (killed after the reconnect grace) unless true."""
    env: dict[str, str] | None = None

    def __post_init__(self) -> None:
        for field, v in (("rows", self.rows), ("cols", self.cols)):
            if v is not None and not 1 <= v <= 1000:
                raise ValueError(f"{field} must be 1-1000, got {v}")
        if self.command is not None and not self.command:
            raise ValueError("command must not be empty")


class ResizeBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    rows: int
    cols: int

    def __post_init__(self) -> None:
        for field, v in (("rows", self.rows), ("cols", self.cols)):
            if not 1 <= v <= 1000:
                raise ValueError(f"{field} must be 1-1000, got {v}")


class InputBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    data: str


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


async def health(app: BridgeApp, req: HttpRequest, p: dict[str, str]) -> HttpResponse:
    link = app.link
    daemon: dict[str, Any] = {"state": link.state, "version": link.daemon_version}
    if link.state != "up" and link.last_error:
        daemon["last_error"] = link.last_error
    body = {
        "status": "ok" if link.connected else "degraded",
        "bridge": {"version": __version__, "pid": os.getpid(), "uptime_secs": round(time.time() - app.started_at, 3),
                   "web_assets": app.web.built},
        "daemon": daemon,
    }
    return json_response(200, body)


async def list_terminals(app: BridgeApp, req: HttpRequest, p: dict[str, str]) -> HttpResponse:
    return json_response(200, await app.link.call("term.list", {}))


async def create_terminal(app: BridgeApp, req: HttpRequest, p: dict[str, str]) -> HttpResponse:
    body: CreateTerminalBody = req.json(CreateTerminalBody)
    params = _drop_none(
        {"argv": body.command, "cwd": body.cwd, "rows": body.rows, "cols": body.cols, "name": body.name,
         "env": body.env, "persistent": body.persistent}
    )
    info = await app.link.call("term.new", params)
    return json_response(201, info, [("location", f"/api/terminals/{info['id']}")])


async def get_terminal(app: BridgeApp, req: HttpRequest, p: dict[str, str]) -> HttpResponse:
    return json_response(200, await app.link.call("term.get", {"id": p["id"]}))


async def resize_terminal(app: BridgeApp, req: HttpRequest, p: dict[str, str]) -> HttpResponse:
    body: ResizeBody = req.json(ResizeBody)
    info = await app.link.call("term.resize", {"id": p["id"], "rows": body.rows, "cols": body.cols})
    return json_response(200, info)


async def input_terminal(app: BridgeApp, req: HttpRequest, p: dict[str, str]) -> HttpResponse:
    body: InputBody = req.json(InputBody)
    await app.link.call("term.input", {"id": p["id"], "data": body.data.encode()})
    return json_response(200, {"status": "sent", "bytes": len(body.data.encode())})


async def delete_terminal(app: BridgeApp, req: HttpRequest, p: dict[str, str]) -> HttpResponse:
    info = await app.link.call("term.get", {"id": p["id"]})
    await app.link.call("term.remove", {"id": info["id"]})
    return json_response(200, {"status": "deleted", "id": info["id"]})


async def llm_complete(app: BridgeApp, req: HttpRequest, p: dict[str, str]) -> HttpResponse:
    from tundra.intelligence.api import AskParams

    params: AskParams = req.json(AskParams)
    if not params.prompt and not params.messages:
        raise BadRequest("give `prompt` or `messages`")
    # An LLM call may legitimately take long; its own deadline lives in the router.
    result = await app.link.call("llm.ask", params, timeout=app.llm_timeout)
    return json_response(200, result)


async def list_tasks(app: BridgeApp, req: HttpRequest, p: dict[str, str]) -> HttpResponse:
    params: dict[str, Any] = {}
    for key in ("state", "repo"):
        if req.query.get(key):
            params[key] = req.query[key]
    if req.query.get("limit"):
        try:
            params["limit"] = int(req.query["limit"])
        except ValueError:
            raise BadRequest("limit must be an integer") from None
    return json_response(200, await app.link.call("task.list", params))


async def add_task(app: BridgeApp, req: HttpRequest, p: dict[str, str]) -> HttpResponse:
    body = req.json(dict[str, Any])
    return json_response(201, await app.link.call("task.add", body))


async def get_task(app: BridgeApp, req: HttpRequest, p: dict[str, str]) -> HttpResponse:
    return json_response(200, await app.link.call("task.get", {"id": p["id"]}))


async def task_action(app: BridgeApp, req: HttpRequest, p: dict[str, str]) -> HttpResponse:
    if p["action"] not in TASK_ACTIONS:
        raise RouteNotFound(f"no such task action: {p['action']}")
    body = req.json(dict[str, Any])
    body["id"] = p["id"]
    return json_response(200, await app.link.call(f"task.{p['action']}", body))


async def metrics(app: BridgeApp, req: HttpRequest, p: dict[str, str]) -> HttpResponse:
    pool: dict[str, float] | None = None
    by_status: dict[str, int] | None = None
    if app.link.connected:
        try:
            listing = await app.link.call("term.list", {}, timeout=2.0)
            by_status = {"active": 0, "disconnected": 0, "dead": 0}
            for t in listing.get("terminals", []):
                s = str(t.get("status"))
                by_status[s] = by_status.get(s, 0) + 1
            status = await app.link.call("status", {}, timeout=2.0)
            term: dict[str, Any] = (status.get("services") or {}).get("terminals") or {}
            pool_info: dict[str, Any] = term["pool"] if isinstance(term.get("pool"), dict) else term
            active = pool_info.get("active_count", pool_info.get("active"))
            cap = pool_info.get("max_ptys", pool_info.get("max"))
            if active is not None and cap is not None:
                pool = {"active": float(active), "max": float(cap),
                        "spawned": float(pool_info.get("spawned", 0)), "failed": float(pool_info.get("failed", 0))}
        except Exception:  # noqa: BLE001 - a scrape must still answer with the bridge's own figures
            pass
    text = app.metrics.render(pool=pool, terminals_by_status=by_status)
    return HttpResponse(200, text.encode(), content_type="text/plain; version=0.0.4; charset=utf-8")


ERROR_MODULES = (
    "tundra.sessions.errors",
    "tundra.tasks.errors",
    "tundra.agents.errors",
    "tundra.workspace.errors",
    "tundra.intelligence.errors",
    "tundra.harness.errors",
    "tundra.store.errors",
    "tundra.daemon.errors",
)


def register_error_codes() -> None:
    """Import every service's error classes so a daemon error code maps to its HTTP status.

    Errors cross IPC as codes; the bridge rebuilds the typed class only if it is defined in
    this process.
    """
    import importlib

    for name in ERROR_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue


def build_routes() -> list[Route]:
    register_error_codes()
    table: list[tuple[str, str, Handler, bool]] = [
        ("GET", "/api/health", health, False),
        ("GET", "/api/terminals", list_terminals, True),
        ("POST", "/api/terminals", create_terminal, True),
        ("GET", "/api/terminals/{id}", get_terminal, True),
        ("POST", "/api/terminals/{id}/resize", resize_terminal, True),
        ("POST", "/api/terminals/{id}/input", input_terminal, True),
        ("DELETE", "/api/terminals/{id}", delete_terminal, True),
        ("POST", "/api/llm/complete", llm_complete, True),
        ("GET", "/api/tasks", list_tasks, True),
        ("POST", "/api/tasks", add_task, True),
        ("GET", "/api/tasks/{id}", get_task, True),
        ("POST", "/api/tasks/{id}/{action}", task_action, True),
        ("GET", "/metrics", metrics, True),
    ]
    return [Route(m, pat, h, auth, _compile(pat)) for m, pat, h, auth in table]


TASK_ACTIONS = frozenset({"approve", "reject", "cancel", "retry"})
