"""Where every file Tundra reads or writes lives.

``TUNDRA_HOME`` (default ``~/.auto-tundra``) holds the seed's layout::

    config.toml  config/harness.toml  config/api_profiles.json  config/agents.toml
    data/  logs/  daemon.lock  bridge.token  run/

The IPC socket is resolved separately (see :func:`socket_path`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TundraPaths", "home", "socket_path", "SOCKET_PATH_LIMIT", "check_socket_path"]

# sun_path is 108 bytes on Linux and 104 on macOS, including the trailing NUL.
SOCKET_PATH_LIMIT = 104 if sys.platform == "darwin" else 108


def home(env: dict[str, str] | None = None) -> Path:
    """``$TUNDRA_HOME`` or ``~/.auto-tundra``, expanded and absolute."""
    env = os.environ if env is None else env  # type: ignore[assignment]
    raw = env.get("TUNDRA_HOME") if env else None
    base = Path(raw).expanduser() if raw else Path("~/.auto-tundra").expanduser()
    return base.absolute()


@dataclass(frozen=True)
class TundraPaths:
    """Every well-known file under one ``TUNDRA_HOME``."""

    home: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> TundraPaths:
        return cls(home(env))

    @property
    def config_file(self) -> Path:
        return self.home / "config.toml"

    @property
    def config_dir(self) -> Path:
        return self.home / "config"

    @property
    def harness_file(self) -> Path:
        return self.config_dir / "harness.toml"

    @property
    def api_profiles_file(self) -> Path:
        return self.config_dir / "api_profiles.json"

    @property
    def agents_file(self) -> Path:
        return self.config_dir / "agents.toml"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def daemon_log(self) -> Path:
        return self.logs_dir / "daemon.log"

    @property
    def bridge_log(self) -> Path:
        return self.logs_dir / "bridge.log"

    @property
    def lock_file(self) -> Path:
        return self.home / "daemon.lock"

    @property
    def bridge_token_file(self) -> Path:
        return self.home / "bridge.token"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def sqlite_file(self) -> Path:
        return self.data_dir / "tundra.sqlite3"

    @property
    def profile_usage_file(self) -> Path:
        return self.data_dir / "profile_usage.json"

    @property
    def orphans_file(self) -> Path:
        """Process groups/sessions of live terminals (killed at start if a daemon died)."""
        return self.data_dir / "terminal_pgids.json"

    @property
    def worktrees_dir(self) -> Path:
        return self.data_dir / "worktrees"

    def ensure(self) -> None:
        """Create the directories the daemon writes to (0700: they hold secrets and sockets)."""
        for d in (self.home, self.config_dir, self.data_dir, self.logs_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)


def check_socket_path(path: Path) -> Path:
    """Raise ConfigError-family error when ``path`` cannot fit in ``sun_path``."""
    n = len(os.fsencode(str(path)))
    if n >= SOCKET_PATH_LIMIT:
        from tundra.config.errors import ConfigError

        raise ConfigError(
            f"socket path is too long ({n} bytes, limit {SOCKET_PATH_LIMIT - 1}): {path}",
            hint="set TUNDRA_SOCKET or [daemon] socket_path to a shorter path",
        )
    return path


def socket_path(configured: str | None = None, env: dict[str, str] | None = None) -> Path:
    """Resolve the IPC socket path.

    Order: ``$TUNDRA_SOCKET``; ``[daemon] socket_path``; ``$RUNTIME_DIRECTORY/daemon.sock``
    (systemd); ``$XDG_RUNTIME_DIR/auto-tundra/daemon.sock``; ``$TUNDRA_HOME/run/daemon.sock``.
    """
    env = dict(os.environ) if env is None else env
    if env.get("TUNDRA_SOCKET"):
        p = Path(env["TUNDRA_SOCKET"]).expanduser()
    elif configured:
        p = Path(os.path.expandvars(configured)).expanduser()
    elif env.get("RUNTIME_DIRECTORY"):
        # systemd may pass several colon-separated directories; the first is ours.
        p = Path(env["RUNTIME_DIRECTORY"].split(":")[0]) / "daemon.sock"
    elif env.get("XDG_RUNTIME_DIR") and not env.get("TUNDRA_HOME"):
        p = Path(env["XDG_RUNTIME_DIR"]) / "auto-tundra" / "daemon.sock"
    else:
        p = home(env) / "run" / "daemon.sock"
    return check_socket_path(p.absolute())
