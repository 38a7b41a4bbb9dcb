"""Single-instance lock: ``fcntl.flock`` on ``$TUNDRA_HOME/daemon.lock``.

The kernel drops a flock when its holder dies, however it dies, so a crash can never
leave a stale lock: the file may remain but nobody holds it. Its content (pid, version,
socket, started_at as JSON) is informational, for the error a second daemon prints.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from tundra import __version__
from tundra.daemon.errors import DaemonAlreadyRunning

__all__ = ["DaemonLock", "read_lock_info"]


def read_lock_info(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class DaemonLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, socket_path: str) -> None:
        """Take the lock or raise DaemonAlreadyRunning naming the holder."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = read_lock_info(self.path)
            pid = info.get("pid", "?")
            sock = info.get("socket", "?")
            raise DaemonAlreadyRunning(f"daemon already running (pid {pid}, socket {sock})") from None
        info = {"pid": os.getpid(), "version": __version__, "socket": socket_path, "started_at": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            finally:
                os.close(self._fd)  # closing drops the flock
                self._fd = None

    def held_by_another(self) -> bool:
        """True when some live process holds the lock (used by doctor/status)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False
