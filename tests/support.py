"""Test support: real daemon processes, component checks, condition waits.

``start_daemon`` launches ``python -m tundra daemon`` in a temp TUNDRA_HOME with a short
socket path and waits for systemd's ``READY=1`` on a private NOTIFY_SOCKET -- an event,
not a sleep -- while watching for the process dying early (its log is then in the error).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket as stdsocket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from tundra.ipc.client import Client, open_client

__all__ = ["need", "strict", "wait_for", "short_tempdir", "start_daemon", "DaemonHandle", "daemon_env"]

REPO = Path(__file__).resolve().parent.parent


def strict() -> bool:
    return os.environ.get("TUNDRA_TEST_STRICT") == "1"


def need(condition: Any, reason: str) -> None:
    """Skip (locally) or fail (CI, TUNDRA_TEST_STRICT=1) when a component is missing."""
    if condition:
        return
    if strict():
        pytest.fail(f"required test component missing (TUNDRA_TEST_STRICT=1): {reason}")
    pytest.skip(reason)


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01,
                   message: str = "condition") -> Any:
    """Poll ``predicate`` (sync or async) until truthy; fail the test after ``timeout``."""
    with trio.move_on_after(timeout):
        while True:
            value = predicate()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return value
            await trio.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {message}")


def short_tempdir(prefix: str = "td") -> Path:
    """A temp dir with a short path (Unix socket paths are limited to ~107 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def daemon_env(home: Path, sock: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NOTIFY_SOCKET", "LISTEN_", "WATCHDOG_", "JOURNAL_STREAM", "TUNDRA_", "RUST_LOG"))}
    env.update({"TUNDRA_HOME": str(home), "TUNDRA_SOCKET": str(sock), "PYTHONUNBUFFERED": "1",
                "TUNDRA_LOG": "info,tundra=debug"})
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if extra:
        env.update(extra)
    return env


@dataclass
class DaemonHandle:
    home: Path
    socket: Path
    proc: trio.Process
    log_path: Path
    env: dict[str, str]
    notify_messages: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        async with open_client(self.socket) as c:
            yield c

    async def call(self, method: str, params: Any = None, **kw: Any) -> Any:
        async with open_client(self.socket) as c:
            return await c.call(method, params, **kw)

    def send_signal(self, sig: int) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the daemon and wait for it to exit; returns its exit code."""
        self.send_signal(sig)
        with trio.move_on_after(timeout):
            return await self.proc.wait()
        self.proc.kill()
        await self.proc.wait()
        pytest.fail(f"daemon did not exit within {timeout}s of {signal.Signals(sig).name}\n{self.log_text()[-4000:]}")


def tundra_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tundra", *args]


@asynccontextmanager
async def start_daemon(
    home: Path | None = None,
    *,
    config: str = "",
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    ready_timeout: float = 30.0,
    pass_fds: tuple[int, ...] = (),
) -> AsyncIterator[DaemonHandle]:
    """Run a real daemon for the duration of the block; SIGTERM (then SIGKILL) on exit."""
    base = short_tempdir()
    home = home or (base / "home")
    home.mkdir(parents=True, exist_ok=True)
    if config:
        (home / "config.toml").write_text(config)
    sock = base / "d.sock"
    notify_path = base / "notify.sock"
    notify = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_DGRAM)
    await notify.bind(str(notify_path))
    full_env = daemon_env(home, sock, {"NOTIFY_SOCKET": str(notify_path), **(env or {})})
    log_path = base / "daemon.out"
    log_file = open(log_path, "wb")  # noqa: SIM115, ASYNC230 - a local file, closed below
    proc = await trio.lowlevel.open_process(
        tundra_cmd("daemon", *args), env=full_env, stdout=log_file, stderr=log_file,
        stdin=subprocess.DEVNULL, pass_fds=pass_fds,
    )
    handle = DaemonHandle(home, Path(full_env["TUNDRA_SOCKET"]), proc, log_path, full_env)
    try:
        ready = False
        with trio.move_on_after(ready_timeout):
            async with trio.open_nursery() as nursery:
                async def watch_exit() -> None:
                    await proc.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch_exit)
                while not ready:
                    data = await notify.recv(65536)
                    text = data.decode(errors="replace")
                    handle.notify_messages.append(text)
                    ready = "READY=1" in text.split("\n")
                nursery.cancel_scope.cancel()
        if not ready:
            raise RuntimeError(
                f"daemon did not become ready (exit code {proc.returncode}):\n{handle.log_text()[-6000:]}"
            )
        handle._notify = notify  # type: ignore[attr-defined]
        yield handle
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(20):
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        notify.close()
        log_file.close()
        shutil.rmtree(base, ignore_errors=True)
