"""Entry points of the bridge process (`tundra bridge`) and of `tundra up` (daemon + bridge)."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import trio

from tundra.bridge.auth import load_or_create_token, make_login_code
from tundra.bridge.server import BridgeApp, BridgeOptions
from tundra.config import load_config
from tundra.config.errors import ConfigError
from tundra.config.schema import Config
from tundra.errors import TundraError
from tundra.ipc.client import BlockingClient
from tundra.paths import TundraPaths, socket_path
from tundra.telemetry.directives import resolve_directives
from tundra.telemetry.logging_setup import setup_logging

__all__ = ["run_bridge", "run_up", "login_url", "bridge_base_url", "EXIT_OK", "EXIT_FAILURE", "EXIT_CONFIG"]

log = logging.getLogger("tundra.bridge.main")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def _effective_config(paths: TundraPaths, host: str | None, port: int | None, allow_remote: bool | None) -> Config:
    config = load_config(paths.config_file)
    changes: dict[str, Any] = {}
    if host is not None:
        changes["host"] = host
    if port is not None:
        changes["port"] = port
    if allow_remote:
        changes["allow_remote"] = True
    if changes:
        config = msgspec.structs.replace(config, bridge=msgspec.structs.replace(config.bridge, **changes))
    return config


def bridge_base_url(paths: TundraPaths, config: Config) -> str:
    """The running bridge's URL (from ``run/bridge.json``), else the configured one."""
    try:
        state = json.loads((paths.run_dir / "bridge.json").read_text())
        os.kill(int(state["pid"]), 0)
        return str(state["url"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    host = config.bridge.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.bridge.tls_cert and config.bridge.tls_key else "http"
    return f"{scheme}://{host}:{config.bridge.port}"


def login_url(paths: TundraPaths, base_url: str) -> str:
    """A URL with a one-time login code (creates the token on first use)."""
    paths.ensure()
    token = load_or_create_token(paths.bridge_token_file)
    return f"{base_url}/login?code={make_login_code(token)}"


def _setup_logging(paths: TundraPaths, config: Config, log_format: str | None) -> Any:
    under_systemd = bool(os.environ.get("INVOCATION_ID"))
    return setup_logging(
        directives=resolve_directives(dict(os.environ), config.general.environment, config.general.log_level),
        service="tundra-bridge",
        fmt=log_format or config.logging.format,
        log_file=paths.bridge_log if (config.logging.file and not under_systemd) else None,
        max_bytes=config.logging.max_file_bytes,
        backups=config.logging.backups,
    )


async def _serve(app: BridgeApp, print_login: bool) -> None:
    async with trio.open_nursery() as nursery:
        url = await nursery.start(app.run)
        if print_login:
            link = await trio.to_thread.run_sync(login_url, app.paths, url)
            sys.stdout.write(f"Tundra bridge: open {link}\n(one-time login link; `tundra bridge url` prints a new one)\n")
            sys.stdout.flush()


def run_bridge(
    *,
    host: str | None = None,
    port: int | None = None,
    allow_remote: bool | None = None,
    log_format: str | None = None,
    print_login: bool = False,
) -> int:
    """`tundra bridge`: serve until SIGINT/SIGTERM; returns the exit code."""
    paths = TundraPaths.from_env()
    try:
        config = _effective_config(paths, host, port, allow_remote)
        sock = socket_path(config.daemon.socket_path or None)
    except ConfigError as err:
        sys.stderr.write(f"error: {err.message}\n" + (f"hint: {err.hint}\n" if err.hint else ""))
        return EXIT_CONFIG
    handle = _setup_logging(paths, config, log_format)
    app = BridgeApp(
        config, paths,
        BridgeOptions(host=config.bridge.host, port=config.bridge.port, allow_remote=config.bridge.allow_remote,
                      socket_path=sock),
    )
    try:
        trio.run(_run_until_signal, app, print_login)
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_OK
    except BaseException as exc:  # noqa: BLE001 - report any failure as one line, not a traceback
        leaf = _leaf(exc)
        if isinstance(leaf, TundraError):
            log.error("%s", leaf.message)
            if leaf.hint:
                log.error("hint: %s", leaf.hint)
            return EXIT_CONFIG if leaf.code in ("bridge.remote_bind_refused", "config.invalid") else EXIT_FAILURE
        if isinstance(leaf, OSError):
            log.error("cannot listen on %s:%s: %s", config.bridge.host, config.bridge.port, leaf.strerror or leaf)
            if leaf.errno == errno.EADDRINUSE:
                log.error("hint: another process (another bridge?) uses the port; choose one with --port or [bridge] port")
            return EXIT_FAILURE
        log.critical("bridge crashed", exc_info=exc)
        return EXIT_FAILURE
    finally:
        log.info("bridge stopped")
        handle.close()


async def _run_until_signal(app: BridgeApp, print_login: bool) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve, app, print_login)
            async for signum in signals:
                log.info("received %s, stopping the bridge", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, BaseExceptionGroup):
        for e in exc.exceptions:
            leaf = _leaf(e)
            if isinstance(leaf, (TundraError, OSError)):
                return leaf
    return exc


def _daemon_answers(sock: Path) -> bool:
    try:
        with BlockingClient(sock, timeout=2.0) as c:
            c.call("ping")
        return True
    except TundraError:
        return False


def run_up(*, host: str | None, port: int | None, allow_remote: bool | None, log_format: str | None) -> int:
    """`tundra up`: start the daemon (unless one answers) and the bridge; Ctrl-C stops both."""
    paths = TundraPaths.from_env()
    try:
        config = _effective_config(paths, host, port, allow_remote)
        sock = socket_path(config.daemon.socket_path or None)
    except ConfigError as err:
        sys.stderr.write(f"error: {err.message}\n" + (f"hint: {err.hint}\n" if err.hint else ""))
        return EXIT_CONFIG
    proc: subprocess.Popen[bytes] | None = None
    if _daemon_answers(sock):
        sys.stderr.write(f"tundra up: using the daemon already running on {sock}\n")
    else:
        cmd = [sys.executable, "-m", "tundra", "daemon"] + (["--log-format", log_format] if log_format else [])
        # Its own session: Ctrl-C reaches only us, and we send exactly one SIGTERM (a second
        # signal would make the daemon skip its graceful shutdown).
        proc = subprocess.Popen(cmd, start_new_session=True, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not _daemon_answers(sock):
            if proc.poll() is not None:
                sys.stderr.write(f"error: the daemon exited with code {proc.returncode}\n")
                return proc.returncode or EXIT_FAILURE
            if time.monotonic() > deadline:
                sys.stderr.write("error: the daemon did not answer within 30s\n")
                _stop_daemon(proc)
                return EXIT_FAILURE
            time.sleep(0.1)
    try:
        return run_bridge(host=host, port=port, allow_remote=allow_remote, log_format=log_format, print_login=True)
    finally:
        if proc is not None:
            _stop_daemon(proc)


def _stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
