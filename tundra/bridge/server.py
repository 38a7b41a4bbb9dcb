"""The bridge server: TCP/TLS listeners, one h11 front per connection, REST or WebSocket.

Every connection's request head is parsed with h11. Plain requests go through the security
checks (Host allowlist, Origin allowlist, auth) and the REST/page routes; a WebSocket upgrade
passes the same checks (answering 401/403/404/410 as plain HTTP) and is then handed, with
the bytes already read, to trio-websocket's ``wrap_server_stream``.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any

import h11
import msgspec
import trio
from trio_websocket import wrap_server_stream

from tundra.bridge.auth import BridgeAuth, load_or_create_token
from tundra.bridge.daemon_link import DaemonLink, connection_failure
from tundra.bridge.errors import (
    BadRequest,
    HeadersTooLarge,
    HostForbidden,
    LoginCodeInvalid,
    MethodNotAllowed,
    OriginForbidden,
    RemoteBindRefused,
    RouteNotFound,
    Unauthorized,
)
from tundra.bridge.events_ws import serve_events_socket
from tundra.bridge.http import (
    PAGE_CSP,
    SECURITY_HEADERS,
    HttpRequest,
    HttpResponse,
    PrefixedStream,
    RequestReader,
    error_response,
)
from tundra.bridge.metrics import BridgeMetrics
from tundra.bridge.policy import OriginPolicy, is_loopback_host
from tundra.bridge.routes import Route, build_routes
from tundra.bridge.terminal_ws import TerminalSocket, TerminalSocketSettings, dead_message
from tundra.bridge.web_assets import WebAssets
from tundra.config.schema import Config
from tundra.errors import InternalError, TundraError
from tundra.paths import TundraPaths

__all__ = ["BridgeApp", "BridgeOptions", "HEAD_TIMEOUT", "BODY_TIMEOUT", "KEEPALIVE_TIMEOUT"]

log = logging.getLogger("tundra.bridge.server")
_MIGHT_SWITCH: Any = getattr(h11, "MIGHT_SWITCH_PROTOCOL")  # noqa: B009 - not in h11.__all__
ws_log = logging.getLogger("tundra.bridge.terminal_ws")

HEAD_TIMEOUT = 10.0
"""A client must send a complete request head this soon after connecting (slowloris)."""
BODY_TIMEOUT = 30.0
KEEPALIVE_TIMEOUT = 30.0
MAX_CONNECTIONS = 1024
WS_MAX_MESSAGE = 256 * 1024
WS_QUEUE = 16


class BridgeOptions(msgspec.Struct, kw_only=True):
    host: str
    port: int
    allow_remote: bool = False
    socket_path: Path | None = None


def _status_word(status: str) -> str:
    return status[:1].upper() + status[1:]


class BridgeApp:
    """One bridge process: listeners, daemon link, auth and routes."""

    def __init__(self, config: Config, paths: TundraPaths, options: BridgeOptions) -> None:
        self.config = config
        self.paths = paths
        self.options = options
        bc = config.bridge
        self.tls = bool(bc.tls_cert and bc.tls_key)
        self.metrics = BridgeMetrics()
        self.link = DaemonLink(options.socket_path, self.metrics)
        self.routes: list[Route] = build_routes()
        self.started_at = time.time()
        self.llm_timeout = 300.0
        self.ws_settings = TerminalSocketSettings(
            heartbeat_interval=bc.heartbeat_interval_secs,
            heartbeat_timeout=bc.heartbeat_timeout_secs,
            idle_timeout=bc.idle_timeout_secs,
            send_queue_bytes=bc.send_queue_bytes,
        )
        self.auth: BridgeAuth
        self.policy: OriginPolicy
        self.web: WebAssets
        self.port = options.port
        self._connections = 0
        self._state_file = paths.run_dir / "bridge.json"
        self._grace_expired: dict[str, None] = {}

    # ----------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        host = self.options.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def _check_bind(self) -> None:
        host = self.options.host
        if is_loopback_host(host):
            return
        if not self.options.allow_remote:
            raise RemoteBindRefused(f"refusing to listen on non-loopback address {host} without --allow-remote")
        log.warning(
            "bridge listens on non-loopback address %s: anyone who can reach it can try the token%s",
            host,
            "" if self.tls else "; traffic is NOT encrypted (set [bridge] tls_cert/tls_key)",
        )

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(os.path.expanduser(self.config.bridge.tls_cert), os.path.expanduser(self.config.bridge.tls_key))
        return ctx

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(url)`` once listening."""
        self._check_bind()
        self.paths.ensure()
        token = await trio.to_thread.run_sync(load_or_create_token, self.paths.bridge_token_file)
        self.web = await trio.to_thread.run_sync(WebAssets)
        if not self.web.built:
            log.warning("web page assets are not built; run `make web` (or `npm ci && npm run build`) in the source tree")
        listeners: list[Any] = list(await trio.open_tcp_listeners(self.options.port, host=self.options.host or None))
        if self.options.port == 0:
            # Several address families would get different ephemeral ports: keep the first.
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        self.port = listeners[0].socket.getsockname()[1]
        if self.tls:
            ctx = self._ssl_context()
            listeners = [trio.SSLListener(lst, ctx, https_compatible=True) for lst in listeners]
        self.auth = BridgeAuth(token, cookie_name=f"tundra_session_{self.port}")
        bc = self.config.bridge
        self.policy = OriginPolicy(
            bind_host=self.options.host, port=self.port, tls=self.tls,
            allowed_hosts=bc.allowed_hosts, allowed_origins=bc.allowed_origins,
        )
        await trio.to_thread.run_sync(self._write_state)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.link.run)
                nursery.start_soon(self._log_terminal_events)
                await nursery.start(trio.serve_listeners, self._handle_connection, listeners)
                log.info("bridge listening on %s", self.url, extra={"fields": {"url": self.url}})
                task_status.started(self.url)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._remove_state)

    def _write_state(self) -> None:
        self.paths.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self._state_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "url": self.url, "host": self.options.host, "port": self.port,
                       "tls": self.tls}, f)
        tmp.replace(self._state_file)

    def _remove_state(self) -> None:
        try:
            data = json.loads(self._state_file.read_text())
            if data.get("pid") == os.getpid():
                self._state_file.unlink()
        except (OSError, ValueError):
            pass

    async def _log_terminal_events(self) -> None:
        """Log terminal status transitions the way the seed's examples show them.

        Also remembers which terminals died because the reconnect grace expired (the daemon's
        TerminalInfo only carries the exit status), so a late reconnect gets that reason.
        """
        last: dict[str, str] = {}
        since: dict[str, float] = {}
        grace = self.config.terminals.reconnect_grace_secs
        while True:
            if not await self.link.wait_connected(3600):
                continue
            try:
                async with self.link.subscribe_events() as events:
                    async for ev in events:
                        topic = ev.get("topic", "")
                        data = ev.get("data") or {}
                        if not topic.startswith("terminal.") or not isinstance(data, dict) or "id" not in data:
                            continue
                        tid, status = str(data["id"]), str(data.get("status", ""))
                        if topic == "terminal.removed":
                            last.pop(tid, None)
                            since.pop(tid, None)
                            continue
                        prev = last.get(tid)
                        last[tid] = status
                        if data.get("disconnected_since"):
                            since[tid] = float(data["disconnected_since"])
                        if not status or prev == status or prev is None and topic != "terminal.status":
                            continue
                        fields = {"terminal_id": tid}
                        if status == "disconnected":
                            ws_log.debug("Status transition: %s → Disconnected", _status_word(prev or "active"), extra={"fields": fields})
                            if not data.get("persistent", True):
                                ws_log.debug("Buffering output for %g-second grace period", grace, extra={"fields": fields})
                        elif status == "dead":
                            away = time.time() - since.get(tid, time.time())
                            if prev == "disconnected" and not data.get("persistent", True) and away >= grace * 0.9:
                                self._grace_expired[tid] = None
                                while len(self._grace_expired) > 1000:
                                    self._grace_expired.pop(next(iter(self._grace_expired)))
                                ws_log.error("Grace period expired (%gs) without reconnection", grace, extra={"fields": fields})
                                ws_log.info("Killing PTY process for terminal %s", tid, extra={"fields": fields})
                            ws_log.debug("Status transition: %s → Dead", _status_word(prev or "active"), extra={"fields": fields})
                            since.pop(tid, None)
            except (TundraError, BaseExceptionGroup) as exc:
                if connection_failure(exc) is None:
                    raise
            await trio.sleep(0.1)

    # ------------------------------------------------------------- connections

    async def _handle_connection(self, stream: trio.abc.Stream) -> None:
        if self._connections >= MAX_CONNECTIONS:
            await stream.aclose()
            return
        self._connections += 1
        remote = ""
        sock_stream = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
        if isinstance(sock_stream, trio.SocketStream):
            try:
                remote = str(sock_stream.socket.getpeername()[0])
            except OSError:
                remote = ""
        reader = RequestReader(stream, max_body=self.config.bridge.max_body_bytes, remote=remote)
        try:
            await self._serve_requests(reader)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
            pass
        finally:
            self._connections -= 1
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()

    async def _serve_requests(self, reader: RequestReader) -> None:
        first = True
        while True:
            try:
                req = await reader.read_head(HEAD_TIMEOUT if first else KEEPALIVE_TIMEOUT)
            except h11.RemoteProtocolError as exc:
                err: TundraError = (
                    HeadersTooLarge("request head too large")
                    if exc.error_status_hint == 431
                    else BadRequest(f"malformed HTTP request: {exc}")
                )
                await self._send_error_raw(reader, None, err)
                return
            except TundraError as err:
                await self._send_error_raw(reader, None, err)
                return
            if req is None:
                return
            first = False
            if req.is_websocket:
                await self._handle_websocket(reader, req)
                return
            t0 = trio.current_time()
            resp, close = await self._handle_http(reader, req)
            elapsed = trio.current_time() - t0
            self.metrics.observe_request(req.method, req.route, resp.status, elapsed)
            log.debug(
                "%s %s -> %d", req.method, req.path, resp.status,
                extra={"fields": {"request_id": req.request_id, "ms": round(elapsed * 1000, 2)}},
            )
            await reader.send_response(req, resp, close=close)
            if close or not reader.can_continue():
                return

    async def _send_error_raw(
        self, reader: RequestReader, req: HttpRequest | None, err: TundraError, status: int | None = None
    ) -> None:
        try:
            await reader.send_response(req, self._api_error(err, status), close=True)
        except h11.LocalProtocolError:
            pass

    def _api_error(self, err: TundraError, status: int | None = None) -> HttpResponse:
        resp = error_response(err, status)
        resp.headers.append(("cache-control", "no-store"))
        return resp

    # ----------------------------------------------------------------- security

    def _check_host_and_origin(self, req: HttpRequest) -> None:
        if not self.policy.host_allowed(req.header("host")):
            raise _host_forbidden(req.header("host"))
        origin = req.header("origin")
        if origin is not None and not self.policy.origin_allowed(origin):
            raise OriginForbidden(f"origin not allowed: {origin}")

    def _authenticate(self, req: HttpRequest) -> str:
        """``"bearer"`` or ``"cookie"``; raises 401/403."""
        if self.auth.check_bearer(req.header("authorization")):
            return "bearer"
        if self.auth.check_session(req.cookie(self.auth.cookie_name)):
            if req.header("origin") is None and (req.is_websocket or req.method not in ("GET", "HEAD")):
                # Browsers always send Origin on these; its absence means a non-browser
                # client, which must use the bearer token.
                raise OriginForbidden("a request without an Origin header needs the bearer token")
            return "cookie"
        raise Unauthorized("authentication required")

    # --------------------------------------------------------------------- HTTP

    async def _handle_http(self, reader: RequestReader, req: HttpRequest) -> tuple[HttpResponse, bool]:
        close = False
        try:
            self._check_host_and_origin(req)
            if req.path.startswith("/api/") or req.path == "/metrics":
                resp = await self._handle_api(reader, req)
            else:
                resp = self._handle_page(req)
        except TundraError as err:
            resp = self._api_error(err)
            if (
                reader.conn.their_state is h11.SEND_BODY
                and "content-length" not in req.headers
                and "transfer-encoding" not in req.headers
            ):
                # No body to skip: consume the end of the message to keep the connection.
                with trio.move_on_after(1.0):
                    await reader.read_body(req, 1.0)
        except Exception as exc:  # noqa: BLE001 - a bug must answer 500, not kill the connection task
            log.exception("request failed", extra={"fields": {"request_id": req.request_id, "path": req.path}})
            resp = self._api_error(InternalError(f"internal error: {type(exc).__name__}"))
            close = True
        if reader.conn.their_state not in (h11.DONE, _MIGHT_SWITCH):
            close = True  # body left unread: cannot keep the connection
        return resp, close

    async def _handle_api(self, reader: RequestReader, req: HttpRequest) -> HttpResponse:
        match: tuple[Route, dict[str, str]] | None = None
        allowed: list[str] = []
        for route in self.routes:
            params = route.match(req.path)
            if params is None:
                continue
            if route.method == req.method or (route.method == "GET" and req.method == "HEAD"):
                match = (route, params)
                break
            allowed.append(route.method)
        if match is None:
            if allowed:
                req.route = "method_not_allowed"
                raise MethodNotAllowed(f"method {req.method} not allowed on {req.path} (allowed: {', '.join(sorted(set(allowed)))})")
            raise RouteNotFound(f"no route for {req.method} {req.path}")
        route, params = match
        req.route = route.pattern
        if route.auth:
            self._authenticate(req)
        await reader.read_body(req, BODY_TIMEOUT)
        resp = await route.handler(self, req, params)
        resp.headers.append(("cache-control", "no-store"))
        return resp

    def _handle_page(self, req: HttpRequest) -> HttpResponse:
        if req.method not in ("GET", "HEAD"):
            req.route = "page"
            raise MethodNotAllowed(f"method {req.method} not allowed on {req.path}")
        if req.path == "/login":
            req.route = "/login"
            return self._login(req)
        if req.path == "/favicon.ico":
            req.route = "/favicon.ico"
            return HttpResponse(204, b"", content_type="image/x-icon")
        key = "/assets/index.html" if req.path in ("/", "/index.html") else req.path
        req.route = "/" if key == "/assets/index.html" else ("/vendor/*" if key.startswith("/vendor/") else "/assets/*")
        asset = self.web.get(key)
        if asset is None:
            req.route = "unmatched"
            raise RouteNotFound(f"no route for {req.method} {req.path}")
        headers = [("cache-control", "no-cache"), ("content-security-policy", PAGE_CSP)]
        return HttpResponse(200, asset.body, headers, content_type=asset.content_type)

    def _login(self, req: HttpRequest) -> HttpResponse:
        code = req.query.get("code", "")
        try:
            self.auth.redeem_login_code(code)
        except LoginCodeInvalid as err:
            body = (
                "<!doctype html><meta charset=utf-8><title>Tundra: login failed</title>"
                f"<p>Login failed: {err.message}.</p><p>Run <code>tundra bridge url</code> and open the new link.</p>"
            ).encode()
            return HttpResponse(401, body, [("cache-control", "no-store"), ("content-security-policy", PAGE_CSP)],
                                content_type="text/html; charset=utf-8")
        cookie = self.auth.session_cookie(self.auth.issue_session(), secure=self.tls)
        log.info("browser session started via login code", extra={"fields": {"remote": req.remote}})
        return HttpResponse(303, b"", [("location", "/"), ("set-cookie", cookie), ("cache-control", "no-store")],
                            content_type="text/plain")

    # ---------------------------------------------------------------- WebSocket

    async def _handle_websocket(self, reader: RequestReader, req: HttpRequest) -> None:
        kind = ""
        info: dict[str, Any] = {}
        since: int | None = None
        try:
            self._check_host_and_origin(req)
            self._authenticate(req)
            parts = req.path.strip("/").split("/")
            if parts == ["ws", "events"]:
                kind = "events"
                req.route = "/ws/events"
                self.link.client()
            elif len(parts) == 3 and parts[:2] == ["ws", "terminal"] and parts[2]:
                kind = "terminal"
                req.route = "/ws/terminal/{id}"
                if "since" in req.query:
                    try:
                        since = int(req.query["since"])
                    except ValueError:
                        raise BadRequest("since must be a non-negative integer") from None
                    if since < 0:
                        raise BadRequest("since must be a non-negative integer")
                info = await self.link.call("term.get", {"id": parts[2]})
                if info.get("status") == "dead":
                    if info.get("id") in self._grace_expired:
                        info["exit_reason"] = "grace_expired"
                    ws_log.warning("Reconnect attempt received, returning 410 Gone", extra={"fields": {"terminal_id": info.get("id")}})
                    raise _Gone(TundraError.from_wire("terminal.dead", dead_message(info), None, {
                        "exit_code": info.get("exit_code"), "exit_signal": info.get("exit_signal")}))
            else:
                req.route = "unmatched"
                raise RouteNotFound(f"no WebSocket route for {req.path}")
        except _Gone as gone:
            self.metrics.observe_request("GET", req.route, 410, 0.0)
            await self._send_error_raw(reader, req, gone.err, status=410)
            return
        except TundraError as err:
            self.metrics.observe_request("GET", req.route, err.http_status, 0.0)
            await self._send_error_raw(reader, req, err)
            return
        self.metrics.observe_request("GET", req.route, 101, 0.0)
        stream = PrefixedStream(bytes(reader.raw), reader.stream)
        async with trio.open_nursery() as nursery:
            with trio.move_on_after(HEAD_TIMEOUT):
                wsreq = await wrap_server_stream(
                    nursery, stream, message_queue_size=WS_QUEUE, max_message_size=WS_MAX_MESSAGE
                )
                headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS]
                headers.append((b"x-request-id", req.request_id.encode()))
                ws = await wsreq.accept(extra_headers=headers)
            if "ws" not in locals():
                log.warning("WebSocket handshake did not complete within %gs", HEAD_TIMEOUT,
                            extra={"fields": {"request_id": req.request_id, "path": req.path}})
                nursery.cancel_scope.cancel()
                return
            self.metrics.ws_clients[kind] += 1
            try:
                if kind == "terminal":
                    await TerminalSocket(ws, self.link, self.metrics, info, since, self.ws_settings).run()
                else:
                    topics = tuple(t for t in req.query.get("topics", "").split(",") if t)
                    await serve_events_socket(
                        ws, self.link, self.metrics,
                        heartbeat_interval=self.ws_settings.heartbeat_interval,
                        heartbeat_timeout=self.ws_settings.heartbeat_timeout,
                        topics=topics,
                    )
            finally:
                self.metrics.ws_clients[kind] -= 1
                nursery.cancel_scope.cancel()


def _host_forbidden(host: str | None) -> TundraError:
    return HostForbidden(f"host not allowed: {host or '(missing Host header)'}")


class _Gone(Exception):
    """A WebSocket to a dead terminal: answered 410 with the daemon's ``terminal.dead`` code."""

    def __init__(self, err: TundraError) -> None:
        self.err = err
