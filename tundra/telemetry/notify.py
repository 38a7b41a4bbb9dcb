"""systemd notification protocol (sd_notify) and socket activation (LISTEN_FDS)."""

from __future__ import annotations

import os
import socket
import time

__all__ = ["Notifier", "listen_fds", "watchdog_interval"]


class Notifier:
    """Sends ``READY=1``, ``STATUS=``, ``STOPPING=1``, ``WATCHDOG=1`` to ``$NOTIFY_SOCKET``.

    A no-op when not started by systemd. The socket path is read once and the variable
    removed so children (terminals) never inherit it.
    """

    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = os.environ if env is None else env  # type: ignore[assignment]
        addr = env.get("NOTIFY_SOCKET", "") if env is not None else ""
        self.address: str | None = None
        if addr:
            # Abstract namespace sockets start with '@'.
            self.address = "\0" + addr[1:] if addr.startswith("@") else addr
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        if self.address is None:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *( [f"STATUS={status}"] if status else [] ), f"MAINPID={os.getpid()}")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: dict[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings (half of WATCHDOG_USEC), or None when not asked."""
    env = os.environ if env is None else env  # type: ignore[assignment]
    usec = env.get("WATCHDOG_USEC") if env is not None else None
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID") if env is not None else None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2 / 1_000_000 if value > 0 else None


SD_LISTEN_FDS_START = 3


def listen_fds(env: dict[str, str] | None = None, *, unset: bool = True) -> list[int]:
    """File descriptors passed by systemd/launchd-style socket activation (LISTEN_FDS)."""
    env = os.environ if env is None else env  # type: ignore[assignment]
    if env is None:
        return []
    pid = env.get("LISTEN_PID")
    count = env.get("LISTEN_FDS")
    if not count or not count.isdigit():
        return []
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return []
    fds = list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)))
    for fd in fds:
        os.set_inheritable(fd, False)
    if unset and env is os.environ:
        for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(k, None)
    return fds
