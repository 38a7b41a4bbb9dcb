"""`tundra daemon`: lock, socket, services, signals, systemd integration, ordered shutdown.

One ``trio.run``, one root nursery. Start order: IPC listener bound (so clients queue in
the backlog), services in order, then the IPC server accepts and READY=1 is sent.
Shutdown (SIGTERM/SIGINT, ``daemon.stop``): stop accepting, cancel services in reverse
order (each kills and reaps its children), remove the socket, exit 0 -- within
``[daemon] shutdown_timeout_secs``. A second signal cancels everything at once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket as stdsocket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import trio

from tundra.config import Config, ConfigError, load_config
from tundra.daemon.app import Daemon
from tundra.daemon.builtin import register_builtin_methods
from tundra.daemon.errors import DaemonAlreadyRunning
from tundra.daemon.lock import DaemonLock
from tundra.daemon.service import Service
from tundra.daemon.services import build_services
from tundra.errors import TundraError
from tundra.ipc.server import IpcServer, bind_unix_socket
from tundra.paths import TundraPaths, socket_path
from tundra.telemetry.directives import resolve_directives
from tundra.telemetry.logging_setup import LoggingHandle, setup_logging
from tundra.telemetry.notify import Notifier, listen_fds, watchdog_interval

__all__ = ["DaemonOptions", "run_daemon", "EXIT_OK", "EXIT_CRASH", "EXIT_CONFIG"]

log = logging.getLogger("tundra.daemon")

EXIT_OK, EXIT_CRASH, EXIT_CONFIG = 0, 1, 2


@dataclass
class DaemonOptions:
    environment: str | None = None
    log_format: str | None = None
    foreground_log: bool = True


@dataclass
class _Running:
    service: Service
    scope: trio.CancelScope
    done: trio.Event = field(default_factory=trio.Event)


class DaemonRuntime:
    """The running daemon: services, IPC server, shutdown and reload."""

    def __init__(self, daemon: Daemon, listener: stdsocket.socket, owns_socket: bool,
                 notifier: Notifier, logging_handle: LoggingHandle | None) -> None:
        self.daemon = daemon
        self.listener = listener
        self.owns_socket = owns_socket
        self.notifier = notifier
        self.logging_handle = logging_handle
        self.stop_requested = trio.Event()
        self.running: list[_Running] = []
        self.ipc: IpcServer | None = None
        self.force = False
        daemon.runtime = self  # type: ignore[attr-defined]

    def request_stop(self, reason: str) -> None:
        if not self.stop_requested.is_set():
            log.info("shutting down (%s)", reason)
            self.stop_requested.set()

    async def main(self) -> None:
        cfg = self.daemon.config
        async with trio.open_nursery() as root:
            root.start_soon(self._signals, root.cancel_scope)
            interval = watchdog_interval()
            if interval:
                root.start_soon(self._watchdog, interval)
            for svc in build_services(self.daemon):
                self.daemon.add_service(svc)
            for svc in list(self.daemon.services.values()):
                self.notifier.status(f"starting {svc.name}")
                running = _Running(svc, trio.CancelScope())
                await root.start(self._run_service, running)
                self.running.append(running)
                log.debug("service %s ready", svc.name)
            self.ipc = IpcServer(
                self.daemon,
                self.listener,
                max_connections=cfg.daemon.max_connections,
                handshake_timeout=float(os.environ.get("TUNDRA_HANDSHAKE_TIMEOUT", "5")),
            )
            ipc_scope = trio.CancelScope()
            ipc_done = trio.Event()

            async def serve_ipc(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                try:
                    with ipc_scope:
                        assert self.ipc is not None
                        await self.ipc.serve(task_status=task_status)
                finally:
                    ipc_done.set()

            await root.start(serve_ipc)
            log.info(
                "daemon ready",
                extra={"fields": {"pid": os.getpid(), "socket": self.daemon.socket_path,
                                  "environment": cfg.general.environment,
                                  "services": ",".join(self.daemon.services) or "none"}},
            )
            self.notifier.ready(f"serving on {self.daemon.socket_path}")
            await self.stop_requested.wait()
            self.notifier.stopping()
            # Ordered, bounded shutdown; the second signal cancels `root` outright.
            with trio.move_on_after(cfg.daemon.shutdown_timeout_secs) as deadline:
                ipc_scope.cancel()
                await ipc_done.wait()
                for running in reversed(self.running):
                    running.scope.cancel()
                    await running.done.wait()
            if deadline.cancelled_caught:
                log.error("graceful shutdown took longer than %ss; cancelling the rest",
                          cfg.daemon.shutdown_timeout_secs)
            root.cancel_scope.cancel()

    async def _run_service(self, running: _Running, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with running.scope:
                await running.service.run(self.daemon, task_status=task_status)
        finally:
            running.done.set()

    async def _signals(self, root_scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.reload()
                    continue
                name = signal.Signals(signum).name
                if self.stop_requested.is_set():
                    log.warning("second %s: forcing exit (children are killed without grace)", name)
                    self.force = True
                    for svc in self.daemon.services.values():
                        force_stop = getattr(svc, "force_stop", None)
                        if force_stop is not None:
                            try:
                                force_stop()
                            except Exception:
                                log.exception("service %s failed to force-stop", svc.name)
                    root_scope.cancel()
                    return
                self.request_stop(name)

    async def _watchdog(self, interval: float) -> None:
        while True:
            self.notifier.watchdog()
            await trio.sleep(interval)

    async def reload(self) -> dict[str, Any]:
        """SIGHUP: re-read config.toml; apply what can change live; keep running on errors."""
        self.notifier.reloading()
        try:
            try:
                new = await trio.to_thread.run_sync(load_config, self.daemon.paths.config_file)
            except ConfigError as err:
                log.error("config reload failed, keeping the current config: %s", err.message)
                return {"reloaded": False, "error": err.message, "changed": []}
            old = self.daemon.config
            changed = _diff(msgspec.to_builtins(old), msgspec.to_builtins(new))
            if not changed:
                log.info("config reloaded: nothing changed")
            for key, (before, after) in changed.items():
                log.info("config changed: %s: %r -> %r", key, before, after)
            self.daemon.config = new
            if self.logging_handle is not None:
                env = os.environ.get("TUNDRA_ENVIRONMENT") or new.general.environment
                self.logging_handle.set_directives(resolve_directives(dict(os.environ), env, new.general.log_level))
            for svc in self.daemon.services.values():
                try:
                    svc.reload(new)
                except Exception:
                    log.exception("service %s failed to apply the new config", svc.name)
            self.daemon.events.publish("daemon.config_reloaded", {"changed": sorted(changed)})
            return {"reloaded": True, "changed": sorted(changed)}
        finally:
            self.notifier.ready(f"serving on {self.daemon.socket_path}")


def _diff(a: Any, b: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    out: dict[str, tuple[Any, Any]] = {}
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            out.update(_diff(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k)))
    elif a != b:
        out[prefix] = (a, b)
    return out


def _listener_from_activation() -> stdsocket.socket | None:
    """The socket systemd (LISTEN_FDS) or launchd (launch_activate_socket) passed us, if any."""
    fds = listen_fds()
    if not fds and sys.platform == "darwin":
        from tundra.service.launchd import launchd_socket_fds

        fds = launchd_socket_fds()
    if not fds:
        return None
    sock = stdsocket.socket(fileno=fds[0])
    if sock.family != stdsocket.AF_UNIX:
        raise ConfigError(f"socket activation passed fd {fds[0]} of family {sock.family!r}; expected a Unix socket")
    return sock


def load_daemon_config(paths: TundraPaths, environment: str | None) -> Config:
    config = load_config(paths.config_file)
    env = environment or os.environ.get("TUNDRA_ENVIRONMENT")
    if env:
        if env not in ("development", "staging", "production"):
            raise ConfigError(f"--environment: invalid value {env!r}; expected development, staging or production")
        config = msgspec.structs.replace(config, general=msgspec.structs.replace(config.general, environment=env))  # type: ignore[arg-type]
    return config


def run_daemon(opts: DaemonOptions) -> int:
    """Entry point of `tundra daemon`; returns the process exit code."""
    paths = TundraPaths.from_env()
    try:
        config = load_daemon_config(paths, opts.environment)
        sock_path = socket_path(config.daemon.socket_path or None)
    except ConfigError as err:
        _early_error(err)
        return EXIT_CONFIG
    try:
        paths.ensure()
    except OSError as exc:
        _early_error(TundraError(f"cannot create {paths.home}: {exc.strerror}",
                                 hint="check ownership and permissions of TUNDRA_HOME"))
        return EXIT_CONFIG
    notifier = Notifier()
    under_systemd = notifier.enabled or bool(os.environ.get("INVOCATION_ID"))
    env_name = config.general.environment
    handle = setup_logging(
        directives=resolve_directives(dict(os.environ), env_name, config.general.log_level),
        service="tundra-daemon",
        fmt=opts.log_format or config.logging.format,
        log_file=_log_file(paths, config) if not under_systemd or os.environ.get("LOGS_DIRECTORY") else None,
        max_bytes=config.logging.max_file_bytes,
        backups=config.logging.backups,
    )
    log.info("logging initialised (%s)", ", ".join(handle.outputs), extra={"fields": {"service": "tundra-daemon"}})
    lock = DaemonLock(paths.lock_file)
    try:
        lock.acquire(str(sock_path))
    except DaemonAlreadyRunning as err:
        _log_error(err)
        handle.close()
        return EXIT_CONFIG
    owns_socket = True
    try:
        try:
            listener = _listener_from_activation()
            if listener is not None:
                owns_socket = False
                bound = listener.getsockname()
                if isinstance(bound, str) and bound:
                    sock_path = Path(bound)  # report the socket we really serve
                log.info("using the socket passed by the service manager (socket activation)",
                         extra={"fields": {"socket": str(sock_path)}})
            else:
                listener = bind_unix_socket(sock_path)
        except TundraError as err:
            _log_error(err)
            return EXIT_CONFIG
        except OSError as exc:
            _log_error(TundraError(f"cannot bind IPC socket {sock_path}: {exc.strerror}",
                                   hint="check the directory's permissions or set TUNDRA_SOCKET"))
            return EXIT_CONFIG
        sock_stat = os.stat(sock_path) if owns_socket else None
        daemon = Daemon(config, paths, socket_path=str(sock_path))
        register_builtin_methods(daemon)
        runtime = DaemonRuntime(daemon, listener, owns_socket, notifier, handle)
        code = EXIT_OK
        try:
            trio.run(runtime.main)
        except KeyboardInterrupt:
            code = EXIT_OK
        except BaseException as exc:  # noqa: BLE001 - the crash path must log whatever happened
            leaf = _config_leaf(exc)
            if leaf is not None:
                _log_error(leaf)
                code = EXIT_CONFIG
            else:
                log.critical("daemon crashed", exc_info=exc)
                code = EXIT_CRASH
        finally:
            if owns_socket and sock_stat is not None:
                _remove_socket(sock_path, sock_stat)
        if code == EXIT_OK:
            log.info("daemon stopped")
        return code
    finally:
        lock.release()
        notifier.close()
        handle.close()


def _log_file(paths: TundraPaths, config: Config) -> Path | None:
    """logs/daemon.log off-systemd; $LOGS_DIRECTORY/daemon.log when a system unit gives one."""
    if not config.logging.file:
        return None
    logs_dir = os.environ.get("LOGS_DIRECTORY", "").split(":")[0]
    return Path(logs_dir) / "daemon.log" if logs_dir else paths.daemon_log


def _config_leaf(exc: BaseException) -> TundraError | None:
    if isinstance(exc, (ConfigError, DaemonAlreadyRunning)):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            leaf = _config_leaf(sub)
            if leaf is not None:
                return leaf
    return None


def _remove_socket(path: Path, created: os.stat_result) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if (st.st_dev, st.st_ino) == (created.st_dev, created.st_ino):
        path.unlink(missing_ok=True)


def _log_error(err: TundraError) -> None:
    """After logging is set up, errors go through it (stderr/journald/file) once."""
    fields = {"code": err.code}
    if err.hint:
        fields["hint"] = err.hint
    log.error("%s", err.message, extra={"fields": fields})


def _early_error(err: TundraError) -> None:
    sys.stderr.write(f"error: {err.message}\n")
    if err.hint:
        sys.stderr.write(f"hint: {err.hint}\n")
    sys.stderr.flush()
