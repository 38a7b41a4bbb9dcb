"""Which service manager runs here (systemd, launchd or none), and why not when none."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Literal

import msgspec

__all__ = ["Manager", "ManagerProbe", "probe_manager", "pid1_name"]

Manager = Literal["systemd", "launchd", "none"]


class ManagerProbe(msgspec.Struct, frozen=True, kw_only=True):
    manager: Manager
    reason: str
    """Why this manager was chosen, or why none is usable (shown to the user)."""


def pid1_name() -> str:
    """The command name of PID 1 ("systemd", "tini", "bash"...), or "" if unreadable."""
    try:
        return Path("/proc/1/comm").read_text().strip()
    except OSError:
        return ""


def probe_manager(scope: Literal["user", "system"] = "user") -> ManagerProbe:
    """Detect a usable service manager the way ``sd_booted()`` and launchctl users do."""
    if sys.platform == "darwin":
        if shutil.which("launchctl"):
            return ManagerProbe(manager="launchd", reason="macOS launchd")
        return ManagerProbe(manager="none", reason="launchctl is not on PATH")
    if not Path("/run/systemd/system").is_dir():
        init = pid1_name()
        what = f"PID 1 is '{init}', not systemd" if init else "systemd is not running"
        if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
            what += " (this looks like a container)"
        return ManagerProbe(manager="none", reason=what)
    if not shutil.which("systemctl"):
        return ManagerProbe(manager="none", reason="systemctl is not on PATH")
    if scope == "user":
        runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
        # The user manager listens here; without it (`su`, cron, no lingering) --user fails.
        if not Path(runtime, "systemd", "private").exists():
            return ManagerProbe(
                manager="none",
                reason=f"no systemd user manager for uid {os.getuid()} "
                f"(no {runtime}/systemd/private; log in or `loginctl enable-linger`)",
            )
    return ManagerProbe(manager="systemd", reason="systemd is PID 1")
