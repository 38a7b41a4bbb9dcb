"""Test support for the bridge: run a real `tundra bridge` subprocess next to a real daemon."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio
import trio_websocket

from tests.support import DaemonHandle, tundra_cmd, wait_for

__all__ = ["BridgeHandle", "start_bridge", "ws_connect", "recv_until", "ws_handshake"]


@dataclass
class BridgeHandle:
    proc: trio.Process
    url: str
    port: int
    token: str
    home: Path
    log_path: Path

    @property
    def origin(self) -> str:
        return self.url

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def http(self, **kw: Any) -> httpx.AsyncClient:
        headers = {**self.auth, **kw.pop("headers", {})}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10.0, **kw)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def ws_url(self, path: str) -> str:
        return "ws" + self.url[len("http"):] + path


@asynccontextmanager
async def start_bridge(daemon: DaemonHandle, *args: str, env: dict[str, str] | None = None) -> AsyncIterator[BridgeHandle]:
    """Start `tundra bridge --port 0` on the daemon's TUNDRA_HOME/socket; SIGTERM at exit."""
    home = daemon.home
    state = home / "run" / "bridge.json"
    log_path = daemon.log_path.with_name(f"bridge-{len(list(daemon.log_path.parent.glob('bridge-*')))}.out")
    log_file = open(log_path, "wb")  # noqa: SIM115, ASYNC230 - closed below; a local file
    full_env = {**daemon.env, **(env or {})}
    full_env.pop("NOTIFY_SOCKET", None)
    proc = await trio.lowlevel.open_process(
        tundra_cmd("bridge", "--port", "0", *args), env=full_env, stdout=log_file, stderr=log_file,
        stdin=subprocess.DEVNULL,
    )
    try:
        def ready() -> dict[str, Any] | None:
            if proc.returncode is not None:
                raise RuntimeError(f"bridge exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
            try:
                data: dict[str, Any] = json.loads(state.read_text())
            except (OSError, ValueError):
                return None
            return data if data.get("pid") == proc.pid else None

        info = await wait_for(ready, timeout=20, message="bridge to listen")
        token = (home / "bridge.token").read_text().strip()
        yield BridgeHandle(proc, info["url"], info["port"], token, home, log_path)
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(10):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            log_file.close()


@asynccontextmanager
async def ws_connect(
    bridge: BridgeHandle, path: str, *, headers: dict[str, str] | None = None, bearer: bool = True
) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    hdrs = dict(bridge.auth) if bearer else {}
    hdrs.update(headers or {})
    async with trio_websocket.open_websocket_url(
        bridge.ws_url(path), extra_headers=[(k.encode(), v.encode()) for k, v in hdrs.items()],
        max_message_size=16 * 1024 * 1024, message_queue_size=64, connect_timeout=10, disconnect_timeout=2,
    ) as ws:
        try:
            yield ws
        finally:
            # trio-websocket's client skips closing its socket when the *server* closed the
            # WebSocket first (aclose() returns early); close it so nothing leaks.
            with trio.CancelScope(shield=True):
                await ws._stream.aclose()


async def recv_until(
    ws: trio_websocket.WebSocketConnection, predicate: Any, timeout: float = 10.0
) -> tuple[bytes, list[dict[str, Any]]]:
    """Collect output bytes and control messages until ``predicate(data, controls)`` holds."""
    data = bytearray()
    controls: list[dict[str, Any]] = []
    with trio.fail_after(timeout):
        while not predicate(bytes(data), controls):
            msg = await ws.get_message()
            if isinstance(msg, bytes):
                data += msg
            else:
                controls.append(json.loads(msg))
    return bytes(data), controls


async def ws_handshake(
    bridge: BridgeHandle, path: str, headers: dict[str, str] | None = None, *, bearer: bool = True
) -> tuple[int, dict[str, str], bytes, trio.SocketStream]:
    """A hand-made WebSocket upgrade: (status, headers, body-or-leftover, open stream)."""
    import base64
    import os

    stream = await trio.open_tcp_stream("127.0.0.1", bridge.port)
    hdrs = {"Host": f"127.0.0.1:{bridge.port}", "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Sec-WebSocket-Version": "13"}
    if bearer:
        hdrs.update(bridge.auth)
    hdrs.update(headers or {})
    head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    await stream.send_all(head.encode())
    buf = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in buf:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            buf += chunk
        head_bytes, _, rest = buf.partition(b"\r\n\r\n")
        lines = head_bytes.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        resp_headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        if status != 101:
            length = int(resp_headers.get("content-length", "0"))
            while len(rest) < length:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                rest += chunk
    if status != 101:
        await stream.aclose()
    return status, resp_headers, rest, stream
