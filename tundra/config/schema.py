"""The configuration schema: one msgspec Struct per ``config.toml`` section.

Defaults follow the troubleshooting guide (the seed). Validation of ranges lives in
``__post_init__`` so msgspec reports it with the field's path. Every field needs a default:
a missing file or section means "use the defaults".
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "Config",
    "GeneralConfig",
    "DaemonConfig",
    "TerminalsConfig",
    "DoltConfig",
    "StoreConfig",
    "BridgeConfig",
    "AgentsConfig",
    "LoggingConfig",
    "Environment",
]

Environment = Literal["development", "staging", "production"]
LogLevel = Literal["trace", "debug", "info", "warn", "warning", "error", "off"]


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base for sections: unknown keys are errors (with a did-you-mean)."""


def _require(cond: bool, field: str, message: str) -> None:
    """Range check; the loader turns ``"<field>: <message>"`` into ``section.field: message``."""
    if not cond:
        raise ValueError(f"{field}: {message}")


def _port(name: str, value: int) -> None:
    _require(1 <= value <= 65535, name, f"must be 1-65535, got {value}")


class GeneralConfig(_Section):
    """General settings."""

    project_name: str = "auto-tundra"
    """A name for this installation (shown in status and the web page)."""
    log_level: LogLevel = "info"
    """Global default level when TUNDRA_LOG/RUST_LOG are unset (per-target levels come from the environment)."""
    environment: Environment = "development"
    """Logging defaults: development `info,tundra.daemon=debug,tundra.core=debug`; staging `info,tundra.daemon=debug`; production `info,tundra.daemon=warn`."""
    workspace_root: str = ""
    """Default directory for new terminals and task repositories (empty = your home)."""


class DaemonConfig(_Section):
    """The daemon process: IPC socket, PTY pool, shutdown."""

    socket_path: str = ""
    """Empty = resolved at run time (TUNDRA_SOCKET, systemd, XDG_RUNTIME_DIR, TUNDRA_HOME/run)."""
    max_ptys: int = 10
    """PTY pool capacity; the seed's safe value is min(ulimit -n / 3, desired concurrency)."""
    queue_when_full: bool = False
    """Make terminal creation wait for a free PTY slot instead of failing with AtCapacity."""
    queue_timeout_secs: float = 30.0
    """How long a queued terminal creation waits for a slot before AtCapacity."""
    kill_grace_secs: float = 2.0
    """SIGHUP -> this long -> SIGKILL when a terminal is torn down."""
    shutdown_timeout_secs: float = 10.0
    """Graceful shutdown budget (stop accepting, stop services, reap children)."""
    max_connections: int = 1024
    """Concurrent IPC connections; more are answered with an error and closed."""

    def __post_init__(self) -> None:
        _require(1 <= self.max_ptys <= 100_000, "max_ptys", f"must be 1-100000, got {self.max_ptys}")
        _require(self.queue_timeout_secs > 0, "queue_timeout_secs", f"must be > 0, got {self.queue_timeout_secs}")
        _require(self.kill_grace_secs >= 0, "kill_grace_secs", f"must be >= 0, got {self.kill_grace_secs}")
        _require(self.shutdown_timeout_secs > 0, "shutdown_timeout_secs", f"must be > 0, got {self.shutdown_timeout_secs}")
        _require(self.max_connections >= 1, "max_connections", f"must be >= 1, got {self.max_connections}")


class TerminalsConfig(_Section):
    """Terminal sessions: scrollback, reconnect grace, reapers."""

    scrollback_bytes: int = 1024 * 1024
    """Output kept per terminal for replay; every byte has an absolute offset (attach `since`)."""
    reconnect_grace_secs: float = 10.0
    """The seed's WS_RECONNECT_GRACE: ephemeral terminals die this long after the last client."""
    idle_timeout_secs: float = 0.0
    """Kill a terminal with no input/output for this long (0 = never)."""
    max_lifetime_secs: float = 0.0
    """Kill a terminal this long after it started (0 = never)."""
    default_rows: int = 24
    """Size of a new terminal when the client gives none."""
    default_cols: int = 80
    """Size of a new terminal when the client gives none."""
    subscriber_queue_bytes: int = 4 * 1024 * 1024
    """An attached client further behind than this is dropped with `lagged` (it can resume)."""
    detach_keys: str = "ctrl-\\,d"
    """Key sequence that detaches `tundra attach`."""

    def __post_init__(self) -> None:
        _require(self.scrollback_bytes >= 4096, "scrollback_bytes", f"must be >= 4096, got {self.scrollback_bytes}")
        _require(self.reconnect_grace_secs >= 0, "reconnect_grace_secs", f"must be >= 0, got {self.reconnect_grace_secs}")
        _require(self.idle_timeout_secs >= 0, "idle_timeout_secs", f"must be >= 0, got {self.idle_timeout_secs}")
        _require(self.max_lifetime_secs >= 0, "max_lifetime_secs", f"must be >= 0, got {self.max_lifetime_secs}")
        _require(1 <= self.default_rows <= 1000, "default_rows", f"must be 1-1000, got {self.default_rows}")
        _require(1 <= self.default_cols <= 1000, "default_cols", f"must be 1-1000, got {self.default_cols}")
        _require(self.subscriber_queue_bytes >= 65536, "subscriber_queue_bytes", f"must be >= 65536, got {self.subscriber_queue_bytes}")


class DoltConfig(_Section):
    """Dolt (or MySQL/MariaDB) server used as the store."""

    dir: str = "~/.auto-tundra/data/dolt"
    """Dolt database directory (`dolt init` runs here when [dolt] manage = true)."""
    host: str = "127.0.0.1"
    """Server address."""
    port: int = 3306
    """Server port; with manage = true the daemon checks it is free first."""
    user: str = "root"
    """SQL user."""
    database: str = "auto_tundra"
    """Database name (created when missing)."""
    auto_commit: bool = False
    """Make a Dolt commit after each write batch."""
    manage: bool = False
    """Run `dolt sql-server` as a child of the daemon."""
    password_env: str = ""
    """Environment variable holding the password (never put it in the file)."""
    start_timeout_secs: float = 30.0
    """How long a managed `dolt sql-server` may take to accept connections."""
    restart_backoff_max_secs: float = 30.0
    """A managed server that dies is restarted with backoff 0.5 s doubling up to this."""

    def __post_init__(self) -> None:
        _port("port", self.port)
        _require(bool(self.dir.strip()), "dir", "must not be empty")
        _require(self.start_timeout_secs > 0, "start_timeout_secs", f"must be > 0, got {self.start_timeout_secs}")
        _require(self.restart_backoff_max_secs >= 0.5, "restart_backoff_max_secs", f"must be >= 0.5, got {self.restart_backoff_max_secs}")


class StoreConfig(_Section):
    """Storage engine selection, timeouts and migrations."""

    engine: Literal["auto", "sqlite", "dolt", "mysql"] = "auto"
    """auto = sqlite unless a [dolt] section is configured."""
    url: str = ""
    """mysql://user@host:port/db (password from password_env or password_file, never the URL)."""
    password_env: str = ""
    """Environment variable holding the MySQL password."""
    password_file: str = ""
    """A 0600 file holding the MySQL password."""
    sqlite_path: str = ""
    """Empty = $TUNDRA_HOME/data/tundra.sqlite3."""
    auto_migrate: bool = True
    """Apply pending migrations when the daemon starts."""
    connect_timeout_secs: float = 5.0
    """pymysql connect timeout."""
    read_timeout_secs: float = 30.0
    """pymysql read timeout (never unbounded)."""
    write_timeout_secs: float = 30.0
    """pymysql write timeout (never unbounded)."""
    pool_size: int = 4
    """MySQL connections kept open."""
    write_retry_secs: float = 10.0
    """A call made while the database is down waits this long for the reconnect, then fails."""
    backoff_base_secs: float = 0.5
    """First retry delay when the database is unreachable (doubles each time)."""
    backoff_max_secs: float = 30.0
    """Longest retry delay."""
    busy_timeout_secs: float = 5.0
    """SQLite: how long a writer waits for a lock held by another process."""
    health_check_secs: float = 5.0
    """MySQL engines: ping the server this often while idle, so a dead server shows as unavailable."""

    def __post_init__(self) -> None:
        _require(self.connect_timeout_secs > 0, "connect_timeout_secs", f"must be > 0, got {self.connect_timeout_secs}")
        _require(self.read_timeout_secs > 0, "read_timeout_secs", f"must be > 0, got {self.read_timeout_secs}")
        _require(self.write_timeout_secs > 0, "write_timeout_secs", f"must be > 0, got {self.write_timeout_secs}")
        _require(1 <= self.pool_size <= 64, "pool_size", f"must be 1-64, got {self.pool_size}")
        _require(self.write_retry_secs >= 0, "write_retry_secs", f"must be >= 0, got {self.write_retry_secs}")
        _require(self.backoff_base_secs > 0, "backoff_base_secs", f"must be > 0, got {self.backoff_base_secs}")
        _require(self.backoff_max_secs >= self.backoff_base_secs, "backoff_max_secs", "must be >= backoff_base_secs")
        _require(self.busy_timeout_secs >= 0, "busy_timeout_secs", f"must be >= 0, got {self.busy_timeout_secs}")
        _require(self.health_check_secs > 0, "health_check_secs", f"must be > 0, got {self.health_check_secs}")


class BridgeConfig(_Section):
    """The HTTP + WebSocket bridge process."""

    host: str = "127.0.0.1"
    """Listen address; a non-loopback address also needs allow_remote (or --allow-remote)."""
    port: int = 3000
    """TCP port (0 = any free port; the bridge writes the real one to run/bridge.json)."""
    allow_remote: bool = False
    """Required to bind a non-loopback address (a warning is logged)."""
    tls_cert: str = ""
    """PEM certificate chain; with tls_key the bridge serves HTTPS/WSS."""
    tls_key: str = ""
    """PEM private key for tls_cert."""
    heartbeat_interval_secs: float = 30.0
    """The seed's WS_HEARTBEAT_INTERVAL: a WebSocket ping this often."""
    heartbeat_timeout_secs: float = 10.0
    """Close a WebSocket whose pong is this late (also the slow-client stall limit)."""
    idle_timeout_secs: float = 300.0
    """The seed's WS_IDLE_TIMEOUT: close a terminal WebSocket with no data either way (0 = never)."""
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    """Extra Origin values accepted (loopback origins on the bridge port always are)."""
    allowed_hosts: list[str] = msgspec.field(default_factory=list)
    """Extra Host names accepted ("name" = any port, "name:port"); DNS-rebinding defence."""
    max_body_bytes: int = 2 * 1024 * 1024
    """Request bodies above this get 413."""
    send_queue_bytes: int = 4 * 1024 * 1024
    """Output queued per terminal WebSocket before a slow client is closed (it can resume)."""

    def __post_init__(self) -> None:
        _require(0 <= self.port <= 65535, "port", f"must be 0-65535, got {self.port}")
        _require(self.heartbeat_interval_secs > 0, "heartbeat_interval_secs", f"must be > 0, got {self.heartbeat_interval_secs}")
        _require(self.heartbeat_timeout_secs > 0, "heartbeat_timeout_secs", f"must be > 0, got {self.heartbeat_timeout_secs}")
        _require(self.idle_timeout_secs >= 0, "idle_timeout_secs", f"must be >= 0, got {self.idle_timeout_secs}")
        _require(self.max_body_bytes >= 1024, "max_body_bytes", f"must be >= 1024, got {self.max_body_bytes}")
        _require(self.send_queue_bytes >= 65536, "send_queue_bytes", f"must be >= 65536, got {self.send_queue_bytes}")


class AgentsConfig(_Section):
    """Agent runs: concurrency, stuck detection, retries."""

    max_concurrent: int = 8
    """Tasks running at once (never beyond the PTY pool)."""
    stuck_after_secs: float = 300.0
    """No output for this long (or 3 identical output windows) counts as stuck."""
    auto_restart: bool = True
    """Retry failed tasks up to their max_attempts, with backoff."""
    heartbeat_interval_secs: float = 30.0
    """How often running agents are checked."""
    per_repo_limit: int = 0
    """At most this many running tasks per repository (0 = no limit)."""
    default_preset: str = "claude"
    """Agent preset for tasks that name none."""
    default_timeout_secs: float = 3600.0
    """Task timeout when the task sets none."""
    default_max_attempts: int = 3
    """Attempts per task when the task sets none."""
    retry_backoff_secs: float = 2.0
    """First automatic retry waits this long; doubles per attempt up to retry_backoff_max_secs."""
    retry_backoff_max_secs: float = 60.0
    """Longest delay between retries."""

    def __post_init__(self) -> None:
        _require(1 <= self.max_concurrent <= 1000, "max_concurrent", f"must be 1-1000, got {self.max_concurrent}")
        _require(self.retry_backoff_secs >= 0, "retry_backoff_secs", f"must be >= 0, got {self.retry_backoff_secs}")
        _require(self.retry_backoff_max_secs >= 0, "retry_backoff_max_secs", f"must be >= 0, got {self.retry_backoff_max_secs}")
        _require(self.default_timeout_secs > 0, "default_timeout_secs", f"must be > 0, got {self.default_timeout_secs}")
        _require(self.stuck_after_secs > 0, "stuck_after_secs", f"must be > 0, got {self.stuck_after_secs}")
        _require(self.per_repo_limit >= 0, "per_repo_limit", f"must be >= 0, got {self.per_repo_limit}")
        _require(self.default_max_attempts >= 1, "default_max_attempts", f"must be >= 1, got {self.default_max_attempts}")


class LoggingConfig(_Section):
    """Log outputs (the filter comes from TUNDRA_LOG / RUST_LOG)."""

    format: Literal["auto", "human", "json"] = "auto"
    """auto = journald under systemd, else human on a TTY/file."""
    file: bool = True
    """Write logs/daemon.log when not under journald."""
    max_file_bytes: int = 10 * 1024 * 1024
    """Rotate logs/daemon.log at this size."""
    backups: int = 5
    """Rotated files kept (daemon.log.1 ... daemon.log.N)."""

    def __post_init__(self) -> None:
        _require(self.max_file_bytes >= 4096, "max_file_bytes", f"must be >= 4096, got {self.max_file_bytes}")
        _require(0 <= self.backups <= 100, "backups", f"must be 0-100, got {self.backups}")


class Config(_Section):
    general: GeneralConfig = msgspec.field(default_factory=GeneralConfig)
    daemon: DaemonConfig = msgspec.field(default_factory=DaemonConfig)
    terminals: TerminalsConfig = msgspec.field(default_factory=TerminalsConfig)
    dolt: DoltConfig | None = None
    """Present only when the file has a [dolt] section (that selects the dolt engine)."""
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    bridge: BridgeConfig = msgspec.field(default_factory=BridgeConfig)
    agents: AgentsConfig = msgspec.field(default_factory=AgentsConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
