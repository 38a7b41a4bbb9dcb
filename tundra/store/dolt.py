"""The managed Dolt server (``[dolt] manage = true``): ``dolt sql-server`` as a daemon child.

Before the first start: ``dolt`` must be on PATH (else :class:`DoltNotFound` with install
hints), the directory must be writable, and the port free (else the seed's ``Address already
in use: port 3306 is held by <process> (pid N)...``). A new directory gets ``dolt init`` with
a user name/email. The server is restarted with backoff if it dies, and stopped (SIGTERM,
then SIGKILL after a grace) when the daemon shuts down -- cancellation is the stop path.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import trio

from tundra.config.schema import DoltConfig
from tundra.paths import TundraPaths
from tundra.store.errors import DoltNotFound, DoltServerFailed, StoreError
from tundra.store.ports import check_port_free
from tundra.store.sqlite import permission_error_for

__all__ = ["DoltServer", "dolt_dir_for"]

log = logging.getLogger("tundra.store.dolt")

STOP_GRACE_SECS = 10.0


def dolt_dir_for(cfg: DoltConfig, paths: TundraPaths) -> Path:
    """``[dolt] dir``; the built-in default follows TUNDRA_HOME (``<home>/data/dolt``)."""
    if cfg.dir == DoltConfig().dir:
        return paths.data_dir / "dolt"
    return Path(os.path.expandvars(cfg.dir)).expanduser().absolute()


class DoltServer:
    """Runs and supervises one ``dolt sql-server``."""

    def __init__(
        self,
        cfg: DoltConfig,
        paths: TundraPaths,
        *,
        on_error: Callable[[StoreError], None] | None = None,
        backoff_base: float = 0.5,
    ) -> None:
        self.cfg = cfg
        self.dir = dolt_dir_for(cfg, paths)
        self.log_file = paths.logs_dir / "dolt-sql-server.log"
        self._on_error = on_error
        self._backoff_base = backoff_base
        self.pid: int | None = None
        self.restarts = 0
        self.last_error: StoreError | None = None
        self.running = False

    def status(self) -> dict[str, Any]:
        return {
            "managed": True,
            "dir": str(self.dir),
            "port": self.cfg.port,
            "pid": self.pid,
            "running": self.running,
            "restarts": self.restarts,
            "last_error": self.last_error.to_dict() if self.last_error else None,
        }

    def _fail(self, err: StoreError) -> None:
        self.last_error = err
        log.error("managed dolt sql-server: %s", err, extra={"fields": {"port": self.cfg.port}})
        if self._on_error is not None:
            self._on_error(err)

    # -- blocking preparation (worker thread) --------------------------------------------
    def prepare(self) -> str:
        """Check dolt, the directory and the port; ``dolt init`` a new directory. Returns the
        dolt binary. Raises DoltNotFound / StorePermissionDenied / PortInUse / DoltServerFailed."""
        # The port first: a server already on it is the most common setup problem (seed).
        check_port_free(self.cfg.host, self.cfg.port)
        dolt = shutil.which("dolt")
        if dolt is None:
            raise DoltNotFound(
                "dolt not found on PATH: [dolt] manage = true needs the `dolt` binary"
            )
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except PermissionError:
            raise permission_error_for(self.dir.parent, "dolt dir parent") from None
        if not os.access(self.dir, os.W_OK | os.X_OK):
            raise permission_error_for(self.dir, "dolt dir")
        if not (self.dir / ".dolt").exists() and not any(self.dir.iterdir()):
            proc = subprocess.run(
                [dolt, "init", "--name", "Auto Tundra", "--email", "auto@tundra.local"],
                cwd=self.dir,
                capture_output=True,
                text=True,
                timeout=60,
                env=_dolt_env(self.dir),
            )
            if proc.returncode != 0:
                raise DoltServerFailed(
                    f"failed to start Dolt SQL server: dolt init: {proc.stderr.strip() or proc.stdout.strip()}"
                )
        return dolt

    # -- running -------------------------------------------------------------------------
    async def _wait_listening(self, proc: trio.Process) -> None:
        deadline = trio.current_time() + self.cfg.start_timeout_secs
        while trio.current_time() < deadline:
            if proc.returncode is not None:
                raise DoltServerFailed(
                    f"failed to start Dolt SQL server: exited with {proc.returncode} (see {self.log_file})"
                )
            try:
                stream = await trio.open_tcp_stream(self.cfg.host, self.cfg.port)
            except OSError:
                await trio.sleep(0.1)
                continue
            await stream.aclose()
            return
        raise DoltServerFailed(
            f"failed to start Dolt SQL server: not listening on port {self.cfg.port} after "
            f"{self.cfg.start_timeout_secs:g}s (see {self.log_file})"
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the server (retrying with backoff), report started once it listens, restart
        it when it dies, stop it on cancellation."""
        delay = self._backoff_base
        started = False
        while True:
            try:
                dolt = await trio.to_thread.run_sync(self.prepare)
                proc = await self._spawn(dolt)
            except StoreError as e:
                self._fail(e)
                await trio.sleep(delay)
                delay = min(delay * 2, self.cfg.restart_backoff_max_secs)
                continue
            try:
                await self._wait_listening(proc)
                self.running = True
                self.last_error = None
                log.info(
                    "dolt sql-server listening on %s:%d (pid %d)",
                    self.cfg.host,
                    self.cfg.port,
                    proc.pid,
                )
                if not started:
                    started = True
                    task_status.started()
                t0 = time.monotonic()
                code = await proc.wait()
                self.running = False
                if time.monotonic() - t0 > 60:
                    delay = self._backoff_base  # it ran fine for a while: restart promptly
                self.restarts += 1
                self._fail(
                    DoltServerFailed(
                        f"failed to start Dolt SQL server: it exited with {code}; restarting in {delay:.1f}s"
                    )
                )
            except StoreError as e:
                self._fail(e)
            finally:
                self.running = False
                with trio.CancelScope(shield=True):
                    await _stop(proc)
                self.pid = None
            await trio.sleep(delay)
            delay = min(delay * 2, self.cfg.restart_backoff_max_secs)

    def _open_log(self) -> BinaryIO:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        return open(self.log_file, "ab")  # noqa: SIM115 -- handed to the child, closed by _spawn

    async def _spawn(self, dolt: str) -> trio.Process:
        out = await trio.to_thread.run_sync(self._open_log)
        try:
            proc = await trio.lowlevel.open_process(
                [dolt, "sql-server", "--host", self.cfg.host, "--port", str(self.cfg.port)],
                cwd=str(self.dir),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=_dolt_env(self.dir),
            )
        except OSError as e:
            raise DoltServerFailed(f"failed to start Dolt SQL server: {e}") from None
        finally:
            out.close()
        self.pid = proc.pid
        return proc


def _dolt_env(directory: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NOTIFY_SOCKET", "LISTEN_", "WATCHDOG_"))
    }
    # Keep dolt's global config (~/.dolt) next to the data instead of in the user's home.
    env.setdefault("DOLT_ROOT_PATH", str(directory.parent / ".dolt-home"))
    return env


async def _stop(proc: trio.Process) -> None:
    if proc.returncode is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        return
    with trio.move_on_after(STOP_GRACE_SECS):
        await proc.wait()
        return
    proc.kill()
    await proc.wait()
